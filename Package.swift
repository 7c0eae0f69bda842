// swift-tools-version:6.2
import PackageDescription

let strict: [SwiftSetting] = [
    .swiftLanguageMode(.v6),
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "Polyglot",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Polyglot", targets: ["Polyglot"]),
        .library(name: "PolyglotSQLite", targets: ["PolyglotSQLite"]),
        .library(name: "PolyglotTesting", targets: ["PolyglotTesting"]),
        .library(name: "PolyglotVectorIndex", targets: ["PolyglotVectorIndex"]),
        .library(name: "PolyglotPostgres", targets: ["PolyglotPostgres"]),
        .library(name: "PolyglotRedis", targets: ["PolyglotRedis"]),
        .library(name: "PolyglotMemcached", targets: ["PolyglotMemcached"]),
        .library(name: "PolyglotServer", targets: ["PolyglotServer"]),
        .executable(name: "polyglot", targets: ["polyglot"]),
    ],
    dependencies: [
        .package(url: "https://github.com/vapor/sqlite-nio.git", from: "1.13.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
    ],
    targets: [
        .target(
            name: "Polyglot",
            dependencies: [
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Yams", package: "Yams"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "PolyglotSQLite",
            dependencies: [
                "Polyglot", "PolyglotVectorIndex",
                // Only for its bundled SQLite (3.5x, FTS5, JSON); we drive the C API ourselves.
                .product(name: "SQLiteNIO", package: "sqlite-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "PolyglotVectorIndex",
            dependencies: ["Polyglot"],
            swiftSettings: strict
        ),
        .target(
            name: "PolyglotPostgres",
            dependencies: [
                "Polyglot",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "PolyglotRedis",
            dependencies: [
                "Polyglot",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "PolyglotMemcached",
            dependencies: [
                "Polyglot",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "PolyglotServer",
            dependencies: [
                "Polyglot",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        .target(
            name: "PolyglotTesting",
            dependencies: ["Polyglot"],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "polyglot",
            dependencies: [
                "Polyglot", "PolyglotSQLite", "PolyglotPostgres", "PolyglotRedis", "PolyglotMemcached", "PolyglotServer",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "PolyglotBenchmarks",
            dependencies: ["Polyglot", "PolyglotSQLite", .product(name: "SQLiteNIO", package: "sqlite-nio")],
            path: "Benchmarks/PolyglotBenchmarks",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "PostgresBenchmarks",
            dependencies: ["Polyglot", "PolyglotSQLite", "PolyglotPostgres", "PolyglotTesting", .product(name: "PostgresNIO", package: "postgres-nio"),
                           .product(name: "Logging", package: "swift-log")],
            path: "Benchmarks/PostgresBenchmarks",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "RedisBenchmarks",
            dependencies: ["Polyglot", "PolyglotSQLite", "PolyglotRedis", "PolyglotPostgres", "PolyglotTesting", .product(name: "Logging", package: "swift-log")],
            path: "Benchmarks/RedisBenchmarks",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "ServerBenchmarks",
            dependencies: ["Polyglot", "PolyglotSQLite", "PolyglotPostgres", "PolyglotRedis", .product(name: "Logging", package: "swift-log")],
            path: "Benchmarks/ServerBenchmarks",
            swiftSettings: strict
        ),
        .executableTarget(
            name: "VectorBenchmarks",
            dependencies: ["Polyglot", "PolyglotVectorIndex"],
            path: "Benchmarks/VectorBenchmarks",
            swiftSettings: strict
        ),
        .testTarget(
            name: "PolyglotVectorIndexTests",
            dependencies: ["Polyglot", "PolyglotVectorIndex"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "PolyglotTests",
            dependencies: ["Polyglot", "PolyglotTesting", .product(name: "MetricsTestKit", package: "swift-metrics"), .product(name: "Metrics", package: "swift-metrics")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "PolyglotSQLiteTests",
            dependencies: ["Polyglot", "PolyglotSQLite", "PolyglotTesting"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "PolyglotPostgresTests",
            dependencies: ["Polyglot", "PolyglotPostgres", "PolyglotTesting", "PolyglotRedis", .product(name: "PostgresNIO", package: "postgres-nio")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "PolyglotRedisTests",
            dependencies: ["Polyglot", "PolyglotRedis", "PolyglotTesting", "PolyglotSQLite"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "PolyglotServerTests",
            dependencies: ["Polyglot", "PolyglotServer", "PolyglotSQLite", "PolyglotPostgres", "PolyglotRedis", "PolyglotTesting",
                           .product(name: "Hummingbird", package: "hummingbird"),
                           .product(name: "HTTPTypes", package: "swift-http-types"),
                           .product(name: "NIOCore", package: "swift-nio"),
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "HummingbirdTesting", package: "hummingbird")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "PolyglotMemcachedTests",
            dependencies: ["Polyglot", "PolyglotMemcached", "PolyglotTesting", "PolyglotSQLite"],
            swiftSettings: strict
        ),
    ]
)
