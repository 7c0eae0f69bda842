import NIOCore
import NIOSSL
import Synchronization

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

/// Commands sent on a connection and not yet written: their bytes (encoded by the sending task, usually into one
/// buffer) and the replies they wait for. The connection's handler takes them on the event loop and writes them.
final class RedisOutbox: Sendable {
    struct State: ~Copyable {
        /// Bytes to write, in order: small commands are encoded into the last buffer, large ones are kept as they are.
        var buffers: [ByteBuffer] = []
        var replies: [RedisPendingReply] = []
        var flushScheduled = false
        /// Whether `buffers[0]` is a buffer of ours (not a caller's), which can be reused after it is written.
        var firstIsOurs = false
        /// An empty buffer, written and given back by the handler, for the next commands.
        var spare: ByteBuffer?

        @inline(__always)
        mutating func append(_ command: borrowing RedisCommand, allocator: ByteBufferAllocator) {
            let size = command.encodedLengthEstimate
            if size < RedisConnection.coalesceLimit {
                if buffers.isEmpty || buffers[buffers.count - 1].readableBytes >= RedisConnection.coalesceLimit * 4 || !lastIsOurs {
                    if buffers.isEmpty, let b = spare {
                        spare = nil
                        buffers.append(b)
                    } else {
                        buffers.append(allocator.buffer(capacity: Swift.max(1024, size * 4)))
                    }
                    if buffers.count == 1 { firstIsOurs = true }
                    lastIsOurs = true
                }
                command.write(into: &buffers[buffers.count - 1])
            } else {
                if case .encoded(let e) = command.storage {
                    buffers.append(e.bytes)
                } else {
                    var b = allocator.buffer(capacity: size)
                    command.write(into: &b)
                    buffers.append(b)
                }
                if buffers.count == 1 { firstIsOurs = false }
                lastIsOurs = false
            }
        }

        /// Whether the last buffer is one of ours that small commands can be appended to.
        var lastIsOurs = false
    }

    let state = Mutex(State())
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
    /// Whether no command waits for a reply (on the event loop).
    var isIdle: Bool { queue.isEmpty }
    /// Commands (a pipeline counts once) sent and waiting for their reply (on the event loop).
    var waitingCount: Int { queue.count }
    /// Replies collected so far for the batch at the head of the queue.
    @exclusivity(unchecked) private var batchResults: [RESPValue] = []
    @exclusivity(unchecked) private var received: ByteBuffer?
    private let parser = RESPParser()
    @exclusivity(unchecked) private var context: ChannelHandlerContext?
    @exclusivity(unchecked) private var timer: Scheduled<Void>?
    /// Set once the connection cannot be used any more; new commands fail with it at once.
    @exclusivity(unchecked) private(set) var failure: RedisError?

    let outbox: RedisOutbox
    /// Loop-side halves of the outbox's double buffering: emptied arrays and a written buffer, swapped into the
    /// outbox by the next flush, so a steady stream of commands allocates no buffers or arrays per write.
    @exclusivity(unchecked) private var spareBuffers: [ByteBuffer] = []
    @exclusivity(unchecked) private var spareReplies: [RedisPendingReply] = []
    @exclusivity(unchecked) private var spareBuffer: ByteBuffer?
    /// Largest written buffer kept for reuse.
    static let spareCapacityLimit = 256 * 1024

    let address: String
    let commandTimeout: TimeAmount?
    let durationTimeout: Duration?
    /// Called on the event loop for RESP3 push messages and, in pub/sub mode, for every message.
    var onPush: ((RESPValue) -> Void)?
    /// In pub/sub mode (RESP2), replies with no pending command are messages, given to `onPush`.
    var pubSubMode = false

    init(address: String, commandTimeout: Duration?, outbox: RedisOutbox) {
        self.address = address
        self.outbox = outbox
        self.durationTimeout = commandTimeout
        self.commandTimeout = commandTimeout.map { TimeAmount($0) }  // NIO's conversion clamps; a product would overflow
    }

    func handlerAdded(context: ChannelHandlerContext) {
        self.context = context
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        self.context = nil
        failAll(RedisError.closed(address, while: "(handler removed)"))
    }

    /// On the event loop: takes what the outbox holds, registers the replies waited for (in send order), then
    /// writes and flushes the bytes. When the connection is gone, the replies fail at once and nothing is written.
    func flush() {
        var buffers = spareBuffers
        var replies = spareReplies
        spareBuffers = []
        spareReplies = []
        let giveBack = spareBuffer
        spareBuffer = nil
        let firstIsOurs = outbox.state.withLock { o -> Bool in
            o.flushScheduled = false
            swap(&buffers, &o.buffers)
            swap(&replies, &o.replies)
            if o.spare == nil { o.spare = giveBack }
            return o.firstIsOurs
        }
        defer {
            replies.removeAll(keepingCapacity: true)
            spareReplies = replies
        }
        guard !buffers.isEmpty else {
            spareBuffers = buffers
            return
        }
        if !replies.isEmpty {
            if let failure {
                for r in replies { r.fail(failure) }
                buffers.removeAll(keepingCapacity: true)
                spareBuffers = buffers
                return
            }
            let deadline = commandTimeout.map { NIODeadline.now() + $0 } ?? .distantFuture
            for r in replies { queue.append(Entry(reply: r, deadline: deadline)) }
            if timer == nil, commandTimeout != nil { scheduleTimer() }
        }
        guard let context else {
            buffers.removeAll(keepingCapacity: true)
            spareBuffers = buffers
            return
        }
        var first = buffers[0]
        for b in buffers { context.write(NIOAny(b), promise: nil) }
        buffers.removeAll(keepingCapacity: true)
        spareBuffers = buffers
        context.flush()
        // Written at once in the usual case, so `first` is ours alone again: keep it for the next commands
        // (clear() copies nothing; it allocates only if the channel still holds the bytes).
        if firstIsOurs, first.capacity <= RedisConnectionHandler.spareCapacityLimit {
            first.clear()
            spareBuffer = first
        }
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
            try parser.parseAll(&buffer) { value in
                deliver(value)
                return failure == nil
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
