import NIOCore

/// A task executor that runs Swift tasks on a NIO event loop, the same thread the client's connections use, so a
/// command's reply resumes its task without a hop between threads.
///
/// Worth it for many small commands from a few tasks (the latency of each round trip, or a tight loop of
/// pipelines); give the client the same loop:
///
/// ```swift
/// let loop = MultiThreadedEventLoopGroup.singleton.next()
/// var config = try RedisConfiguration(url: "redis://127.0.0.1:6379")
/// config.eventLoopGroup = loop                      // every connection on this loop
/// let client = try RedisClient(configuration: config)
/// let executor = RedisEventLoopExecutor(eventLoop: loop)
/// await withTaskExecutorPreference(executor) {
///     for key in keys { _ = try? await client.get(key) }
/// }
/// ```
///
/// Code run this way must not block (it runs on the event loop).
public final class RedisEventLoopExecutor: TaskExecutor {
    public let eventLoop: any EventLoop

    public init(eventLoop: any EventLoop) {
        self.eventLoop = eventLoop
    }

    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        eventLoop.execute {
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}
