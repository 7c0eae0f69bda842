import NIOCore
import NIOSSL

/// What a sent command waits for: one reply, or `count` replies of a pipeline batch.
/// The task waiting is resumed directly from the event loop (no future in between).
enum RedisPendingReply: Sendable {
    case single(UnsafeContinuation<RESPValue, any Error>)
    case batch(UnsafeContinuation<[RESPValue], any Error>, count: Int)

    func fail(_ error: RedisError) {
        switch self {
        case .single(let c): c.resume(throwing: error)
        case .batch(let c, _): c.resume(throwing: error)
        }
    }
}

/// The channel handler of one Redis connection: parses replies and completes the pending commands in the order
/// they were sent (RESP replies come back in order). When the connection closes, fails, or the oldest command
/// passes its deadline, every pending command fails with a typed ``RedisError``, so none can hang.
///
/// Runs on the channel's event loop only.
final class RedisConnectionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    struct Entry {
        var reply: RedisPendingReply
        var deadline: NIODeadline
    }

    // Only touched on the event loop, so the runtime's exclusivity checks (a cost on every access of a class's
    // stored property) are switched off for these.
    @exclusivity(unchecked) private var queue = CircularBuffer<Entry>(initialCapacity: 32)
    /// Replies collected so far for the batch at the head of the queue.
    @exclusivity(unchecked) private var batchResults: [RESPValue] = []
    @exclusivity(unchecked) private var received: ByteBuffer?
    private let parser = RESPParser()
    @exclusivity(unchecked) private var context: ChannelHandlerContext?
    @exclusivity(unchecked) private var timer: Scheduled<Void>?
    /// Set once the connection cannot be used any more; new commands fail with it at once.
    @exclusivity(unchecked) private(set) var failure: RedisError?

    let address: String
    let commandTimeout: TimeAmount?
    let durationTimeout: Duration?
    /// Called on the event loop for RESP3 push messages and, in pub/sub mode, for every message.
    var onPush: ((RESPValue) -> Void)?
    /// In pub/sub mode (RESP2), replies with no pending command are messages, given to `onPush`.
    var pubSubMode = false

    init(address: String, commandTimeout: Duration?) {
        self.address = address
        self.durationTimeout = commandTimeout
        if let t = commandTimeout {
            let (s, atto) = t.components
            self.commandTimeout = .nanoseconds(s * 1_000_000_000 + atto / 1_000_000_000)
        } else {
            self.commandTimeout = nil
        }
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        failAll(RedisError.closed(address, while: "(handler removed)"))
    }

    /// Registers replies to wait for, in send order. Returns false (after failing them) when the connection is gone.
    func enqueue(_ replies: [RedisPendingReply], now: NIODeadline) -> Bool {
        if let failure {
            for r in replies { r.fail(failure) }
            return false
        }
        let deadline = commandTimeout.map { now + $0 } ?? .distantFuture
        for r in replies { queue.append(Entry(reply: r, deadline: deadline)) }
        if timer == nil, commandTimeout != nil { scheduleTimer() }
        return true
    }

    private func scheduleTimer() {
        guard let context, let head = queue.first else { return }
        let loop = context.eventLoop
        let bound = NIOLoopBound(self, eventLoop: loop)
        timer = loop.scheduleTask(deadline: head.deadline) {
            bound.value.timerFired()
        }
    }

    private func timerFired() {
        timer = nil
        guard let head = queue.first else { return }
        if head.deadline <= .now() {
            let error = RedisError.timeout(address, after: durationTimeout ?? .zero)
            fail(error)
        } else {
            scheduleTimer()
        }
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buffer: ByteBuffer
        if var earlier = received {
            // Unread bytes of an incomplete reply: append (`received` is cleared first, so no copy-on-write).
            received = nil
            var incoming = unwrapInboundIn(data)
            earlier.writeBuffer(&incoming)
            buffer = earlier
        } else {
            buffer = unwrapInboundIn(data)
        }
        do {
            while let value = try parser.next(&buffer) {
                deliver(value)
            }
        } catch {
            fail(error)
            return
        }
        if buffer.readableBytes > 0 {
            // Keep only the unread tail, so a long-lived buffer does not grow.
            if buffer.readerIndex > 0 && buffer.readerIndex >= buffer.capacity / 2 { buffer.discardReadBytes() }
            received = buffer
        }
    }

    private func deliver(_ value: RESPValue) {
        if case .push = value {
            onPush?(value)
            return
        }
        guard let head = queue.first else {
            if pubSubMode {
                onPush?(value)
            } else {
                fail(RedisError(.protocolViolation, "Redis at \(address) sent a reply no command was waiting for: \(value).",
                                fix: "This is a bug in the client or a proxy in between; the connection was closed."))
            }
            return
        }
        switch head.reply {
        case .single(let c):
            queue.removeFirst()
            c.resume(returning: value)
        case .batch(let c, let count):
            if batchResults.isEmpty { batchResults.reserveCapacity(count) }
            batchResults.append(value)
            if batchResults.count == count {
                queue.removeFirst()
                let results = batchResults
                batchResults = []
                c.resume(returning: results)
            }
        }
        // The timer is left to fire: it re-arms for the new head, or stops when nothing is pending. (Cancelling
        // and re-scheduling it each time the queue empties costs more than the rare idle wake-up.)
    }

    /// Fails every pending command with `error`, refuses new ones, and closes the channel.
    func fail(_ error: RedisError) {
        failAll(error)
        context?.close(promise: nil)
    }

    private func failAll(_ error: RedisError) {
        if failure == nil { failure = error }
        timer?.cancel()
        timer = nil
        batchResults = []
        let pending = queue
        queue.removeAll()
        for e in pending { e.reply.fail(error) }
    }

    func channelInactive(context: ChannelHandlerContext) {
        failAll(failure ?? RedisError.closed(address, while: "while the command was pending"))
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        let mapped: RedisError
        if let e = error as? RedisError {
            mapped = e
        } else if error is NIOSSLError || error is BoringSSLError {
            mapped = RedisError(.tls, "TLS with Redis at \(address) failed: \(error).",
                                fix: "Check the server's certificate and RedisConfiguration.tls (CA file, server name).", retryable: false)
        } else {
            mapped = RedisError(.connectionClosed, "The connection to Redis at \(address) failed: \(error); pending commands may or may not have run.",
                                fix: "Check that the server is running; the client reconnects on the next command.", retryable: true)
        }
        fail(mapped)
    }
}
