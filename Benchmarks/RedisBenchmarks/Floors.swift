import Foundation
import NIOCore
import NIOPosix
import PolyglotRedis

/// The floor of any SwiftNIO client: a channel handler that sends `GET key`, and sends the next one from
/// `channelRead` once the whole reply is in. No parser, no Swift concurrency, no pool. The gap between this and
/// redis-benchmark is NIO's event loop; the gap between this and PolyglotRedis is the client's own.
final class RawPingPongHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let request: ByteBuffer
    let replyLength: Int
    let total: Int
    let done: EventLoopPromise<([Double], Duration)>
    var samples: [Double] = []
    var pending = 0
    var sentAt: UInt64 = 0
    /// When the first recorded request (after the warm-up) was sent.
    var recordingSince: UInt64 = 0
    let warmup: Int

    init(key: String, replyLength: Int, warmup: Int, total: Int, done: EventLoopPromise<([Double], Duration)>) {
        var b = ByteBufferAllocator().buffer(capacity: 64)
        b.writeString("*2\r\n$3\r\nGET\r\n$\(key.utf8.count)\r\n\(key)\r\n")
        request = b
        self.replyLength = replyLength
        self.total = total
        self.warmup = warmup
        self.done = done
        samples.reserveCapacity(total)
    }

    func channelActive(context: ChannelHandlerContext) {
        send(context)
    }

    private func send(_ context: ChannelHandlerContext) {
        pending = replyLength
        sentAt = DispatchTime.now().uptimeNanoseconds
        if samples.count == warmup { recordingSince = sentAt }
        context.writeAndFlush(NIOAny(request), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        pending -= unwrapInboundIn(data).readableBytes
        guard pending <= 0 else { return }
        samples.append(Double(DispatchTime.now().uptimeNanoseconds - sentAt) / 1000)
        if samples.count == total {
            let elapsed = Duration.nanoseconds(Int64(DispatchTime.now().uptimeNanoseconds - recordingSince))
            done.succeed((Array(samples.dropFirst(warmup)), elapsed))
            context.close(promise: nil)
        } else {
            send(context)
        }
    }
}

/// Round trips of the raw handler above, after 1,000 unrecorded ones.
func rawNIOLatency(_ o: ClientBenchOptions, host: String, port: Int) async throws -> LatencyResult {
    let loop = latencyLoopThread
    let warmup = 1000
    let promise = loop.makePromise(of: ([Double], Duration).self)
    let key = latencyKey
    let replyLength = "$\(o.size)\r\n".utf8.count + o.size + 2
    let total = warmup + o.latencyRequests
    _ = try await ClientBootstrap(group: loop)
        .channelOption(.socketOption(.tcp_nodelay), value: 1)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                try channel.pipeline.syncOperations.addHandler(
                    RawPingPongHandler(key: key, replyLength: replyLength, warmup: warmup, total: total, done: promise))
            }
        }
        .connect(host: host, port: port).get()
    let (samples, elapsed) = try await promise.futureResult.get()
    return LatencyResult(samples, elapsed: elapsed)
}

/// The C floor (Benchmarks/peers/redis-pingpong.c, built by scripts/redis-bench next to this binary):
/// the smallest epoll client, one GET at a time. Nil when it was not built.
func cFloorLatency(_ o: ClientBenchOptions, host: String, port: Int) throws -> LatencyResult? {
    let binary = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("redis-pingpong").path
    guard FileManager.default.isExecutableFile(atPath: binary) else { return nil }
    let (status, text) = try runTool(binary, [host, "\(port)", "key:__rand_int__", "\(o.size)", "\(o.latencyRequests)"])
    var fields: [String: Double] = [:]
    for pair in text.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
        let kv = pair.split(separator: "=")
        if kv.count == 2, let v = Double(kv[1]) { fields[String(kv[0])] = v }
    }
    guard status == 0, let p50 = fields["p50_us"], let p99 = fields["p99_us"], let per = fields["per_request_us"] else {
        throw ClientBenchError("redis-pingpong failed: \(text)")
    }
    return LatencyResult(p50: p50, p99: p99, perRequest: per)
}

/// The floor of any async/await client on SwiftNIO: the bare handler above, but each GET is sent by a task (on the
/// connection's event loop, as ``RedisEventLoopExecutor`` runs ours) that awaits a continuation the handler resumes
/// once the whole reply is in. No parser, no pool, no outbox: the gap between this and the bare handler is what
/// suspending and resuming a Swift task costs; the gap between this and PolyglotRedis is the client's own code.
final class AwaitedPingPongHandler: ChannelInboundHandler {
    typealias InboundIn = ByteBuffer
    let replyLength: Int
    var pending = 0
    var waiter: UnsafeContinuation<Void, Never>?

    init(replyLength: Int) { self.replyLength = replyLength }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        pending -= unwrapInboundIn(data).readableBytes
        guard pending <= 0, let w = waiter else { return }
        waiter = nil
        w.resume()
    }
}

/// Round trips of the awaited handler above from a task on the loop, after 1,000 unrecorded ones.
func awaitedNIOLatency(_ o: ClientBenchOptions, host: String, port: Int) async throws -> LatencyResult {
    let loop = latencyLoopThread
    let key = latencyKey
    let replyLength = "$\(o.size)\r\n".utf8.count + o.size + 2
    let handlerPromise = loop.makePromise(of: NIOLoopBound<AwaitedPingPongHandler>.self)
    let channel = try await ClientBootstrap(group: loop)
        .channelOption(.socketOption(.tcp_nodelay), value: 1)
        .channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                let h = AwaitedPingPongHandler(replyLength: replyLength)
                try channel.pipeline.syncOperations.addHandler(h)
                handlerPromise.succeed(NIOLoopBound(h, eventLoop: channel.eventLoop))
            }
        }
        .connect(host: host, port: port).get()
    let handler = try await handlerPromise.futureResult.get()
    var request = channel.allocator.buffer(capacity: 64)
    request.writeString("*2\r\n$3\r\nGET\r\n$\(key.utf8.count)\r\n\(key)\r\n")
    let sendable = request
    return await withTaskExecutorPreference(RedisEventLoopExecutor(eventLoop: loop)) {
        func roundTrip() async {
            await withUnsafeContinuation { (c: UnsafeContinuation<Void, Never>) in
                let h = handler.value          // on the loop: the task runs there
                h.pending = h.replyLength
                h.waiter = c
                channel.writeAndFlush(sendable, promise: nil)
            }
        }
        let result = await timedRoundTrips(o.latencyRequests, roundTrip)
        channel.close(promise: nil)
        return result
    }
}
