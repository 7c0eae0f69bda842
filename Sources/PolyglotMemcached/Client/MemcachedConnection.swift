import Foundation
import NIOCore
import NIOPosix

/// A request on its way to the channel: its bytes, the shape of its answer, and who waits for it.
struct MemcachedOutbound: Sendable {
    var bytes: ByteBuffer
    var expect: MemcachedExpect
    var promise: EventLoopPromise<MemcachedResponse>
}

/// The channel handler of one connection. Requests are written in the order they arrive and answers come back
/// in that order, so concurrent requests pipeline on one connection. When the connection closes or fails, or the
/// oldest request passes its deadline, every pending request fails with a typed ``MemcachedError`` and the
/// connection is closed: nothing can hang, and a late answer can never be taken for another request's.
///
/// Runs on the channel's event loop only.
final class MemcachedChannelHandler: ChannelDuplexHandler {
    typealias InboundIn = ByteBuffer
    typealias OutboundIn = MemcachedOutbound
    typealias OutboundOut = ByteBuffer

    private struct Pending {
        var expect: MemcachedExpect
        var promise: EventLoopPromise<MemcachedResponse>
        var deadline: NIODeadline
    }

    private var pending = CircularBuffer<Pending>(initialCapacity: 16)
    private var received: ByteBuffer?
    private var parser = MemcachedResponseParser()
    private var context: ChannelHandlerContext?
    private var timer: Scheduled<Void>?
    /// Set once the connection is unusable; later requests fail with it at once.
    private var failure: MemcachedError?
    let address: String
    let commandTimeout: TimeAmount

    init(address: String, commandTimeout: TimeAmount) {
        self.address = address
        self.commandTimeout = commandTimeout
    }

    func handlerAdded(context: ChannelHandlerContext) { self.context = context }

    func handlerRemoved(context: ChannelHandlerContext) {
        fail(MemcachedError(.connectionClosed, "the connection to memcached at \(address) closed"), close: false)
        self.context = nil
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let request = unwrapOutboundIn(data)
        if let failure {
            request.promise.fail(failure)
            promise?.fail(failure)
            return
        }
        pending.append(Pending(expect: request.expect, promise: request.promise, deadline: .now() + commandTimeout))
        if timer == nil { scheduleTimer() }
        context.write(wrapOutboundOut(request.bytes), promise: promise)
        // One flush (one system call) for every request queued on the event loop in the meantime: requests from
        // many tasks that arrive together go out together.
        if !flushScheduled {
            flushScheduled = true
            let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
            context.eventLoop.execute { bound.value.flushNow() }
        }
    }

    private var flushScheduled = false

    private func flushNow() {
        flushScheduled = false
        context?.flush()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer: ByteBuffer
        if var earlier = received {
            received = nil
            var incoming = unwrapInboundIn(data)
            earlier.writeBuffer(&incoming)
            buffer = earlier
        } else {
            buffer = unwrapInboundIn(data)
        }
        do throws(MemcachedError) {
            while buffer.readableBytes > 0 {
                guard let head = pending.first else {
                    throw MemcachedError(.protocolViolation, "memcached at \(address) sent \(buffer.readableBytes) bytes nobody asked for")
                }
                guard let result = try parser.next(&buffer, expecting: head.expect) else { break }
                pending.removeFirst()
                head.promise.completeWith(result.mapError { $0 as any Error })
            }
        } catch {
            fail(error, close: true)
            return
        }
        if buffer.readableBytes > 0 {
            if buffer.readerIndex > 0, buffer.readerIndex >= buffer.capacity / 2 { buffer.discardReadBytes() }
            received = buffer
        }
        if pending.isEmpty { timer?.cancel(); timer = nil }
    }

    func channelInactive(context: ChannelHandlerContext) {
        fail(MemcachedError(.connectionClosed, "the connection to memcached at \(address) closed (server stopped or network failure)"), close: false)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        fail(MemcachedError(.connectionClosed, "the connection to memcached at \(address) failed: \(error)"), close: true)
    }

    private func scheduleTimer() {
        guard let context, let head = pending.first else { return }
        let bound = NIOLoopBound(self, eventLoop: context.eventLoop)
        timer = context.eventLoop.scheduleTask(deadline: head.deadline) { bound.value.timerFired() }
    }

    private func timerFired() {
        timer = nil
        guard let head = pending.first else { return }
        if head.deadline <= .now() {
            let ms = commandTimeout.nanoseconds / 1_000_000
            fail(MemcachedError(.timeout, "memcached at \(address) did not answer within \(ms) ms; the connection was closed"), close: true)
        } else {
            scheduleTimer()
        }
    }

    /// Fails every pending request and marks the connection unusable.
    private func fail(_ error: MemcachedError, close: Bool) {
        if failure == nil { failure = error }
        timer?.cancel(); timer = nil
        received = nil
        let waiting = pending
        pending.removeAll()
        for p in waiting { p.promise.fail(error) }
        if close, let context { context.close(promise: nil) }
    }
}

/// One TCP connection to memcached. Safe to use from many tasks at once: their requests are pipelined.
final class MemcachedConnection: Sendable {
    let channel: any Channel
    let address: String

    private init(channel: any Channel, address: String) {
        self.channel = channel
        self.address = address
    }

    static func connect(host: String, port: Int, connectTimeout: Duration, commandTimeout: Duration,
                        group: any EventLoopGroup) async throws -> MemcachedConnection {
        let address = "\(host):\(port)"
        let timeout = TimeAmount(commandTimeout)
        let bootstrap = ClientBootstrap(group: group)
            .connectTimeout(TimeAmount(connectTimeout))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHandler(MemcachedChannelHandler(address: address, commandTimeout: timeout))
                }
            }
        do {
            let channel = try await bootstrap.connect(host: host, port: port).get()
            return MemcachedConnection(channel: channel, address: address)
        } catch {
            throw MemcachedError(.connectFailed, "could not connect to memcached at \(address): \(error)")
        }
    }

    var isActive: Bool { channel.isActive }

    /// Sends one request and waits for its answer.
    func send(_ bytes: ByteBuffer, expect: MemcachedExpect) async throws -> MemcachedResponse {
        let promise = channel.eventLoop.makePromise(of: MemcachedResponse.self)
        let address = self.address
        // The handler flushes (see `MemcachedChannelHandler.write`).
        channel.write(MemcachedOutbound(bytes: bytes, expect: expect, promise: promise)).whenFailure { error in
            // The request never reached the handler (channel already closed), or the socket write failed.
            if let e = error as? MemcachedError { promise.fail(e) } else {
                promise.fail(MemcachedError(.connectionClosed, "could not send to memcached at \(address): \(error)"))
            }
        }
        return try await promise.futureResult.get()
    }

    func close() async {
        try? await channel.close()
    }
}
