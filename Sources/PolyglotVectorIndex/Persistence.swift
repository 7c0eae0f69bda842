import Polyglot
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

// File format, version 1 (little-endian):
//
//   header, 128 bytes:
//     0  magic "PGHNSWIX"        8  version UInt32 = 1     12 header size UInt32 = 128
//     16 dimension UInt32        20 metric UInt32 (0 l2, 1 cosine, 2 innerProduct)
//     24 m UInt32                28 efConstruction UInt32  32 efSearch UInt32   36 maxLevel Int32
//     40 seed UInt64             48 level-generator state UInt64
//     56 node count UInt64       64 live count UInt64      72 entry point Int64
//     80 payload length UInt64   88 checksum UInt64        96..<128 reserved, zero
//   payload, for N nodes (live and tombstoned):
//     levels Int32 × N, flags UInt8 × N (bit 0: deleted), norms Float × N,
//     rows Float × dimension × N, layer-0 links Int32 × (1 + 2m) × N ([count][neighbours]),
//     upper links: for each node with level L > 0, Int32 × L × (1 + m),
//     ids: for each node, UInt32 byte length + UTF-8 bytes.
//
// The checksum is a 64-bit FNV-1a variant over 8-byte little-endian words (then the tail bytes) of the
// header's first 88 bytes, its reserved bytes and the whole payload.

enum HNSWFile {
    static let magic: [UInt8] = Array("PGHNSWIX".utf8)
    static let version: UInt32 = 1
    static let headerSize = 128
}

/// Streaming checksum whose value does not depend on how the bytes are chunked.
struct StreamChecksum {
    private var hash: UInt64 = 0xcbf2_9ce4_8422_2325
    private var carry: UInt64 = 0
    private var carried = 0
    private static let prime: UInt64 = 0x100_0000_01b3

    mutating func update(_ bytes: UnsafeRawBufferPointer) {
        guard var p = bytes.baseAddress else { return }
        var n = bytes.count
        while carried != 0 && n > 0 {
            carry |= UInt64(p.load(as: UInt8.self)) << (8 * UInt64(carried))
            carried += 1
            p += 1
            n -= 1
            if carried == 8 {
                mix(carry)
                carry = 0
                carried = 0
            }
        }
        var h = hash
        while n >= 8 {
            h = (h ^ UInt64(littleEndian: p.loadUnaligned(as: UInt64.self))) &* StreamChecksum.prime
            h ^= h >> 29
            p += 8
            n -= 8
        }
        hash = h
        while n > 0 {
            carry |= UInt64(p.load(as: UInt8.self)) << (8 * UInt64(carried))
            carried += 1
            p += 1
            n -= 1
        }
    }

    @inline(__always) private mutating func mix(_ w: UInt64) {
        hash = (hash ^ w) &* StreamChecksum.prime
        hash ^= hash >> 29
    }

    var value: UInt64 {
        var h = hash
        if carried > 0 {
            h = (h ^ carry ^ (UInt64(carried) << 56)) &* StreamChecksum.prime
            h ^= h >> 29
        }
        return h
    }
}

private func errnoText() -> String { String(cString: strerror(errno)) }

private func ioError(_ what: String, _ path: String) -> PolyglotError {
    PolyglotError(.engineFailure, "Could not \(what) '\(path)': \(errnoText()).",
                  fix: "Check that the directory exists, is writable and has free space.", retryable: true)
}

/// Buffered writer that checksums what it writes.
private final class FileWriter {
    let fd: Int32
    let path: String
    let buffer: UnsafeMutableRawPointer
    let capacity = 1 << 20
    var used = 0
    var checksum = StreamChecksum()
    var hashing = true

    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
        buffer = .allocate(byteCount: capacity, alignment: 16)
    }
    deinit { buffer.deallocate() }

    func append(_ bytes: UnsafeRawBufferPointer) throws {
        guard let base = bytes.baseAddress else { return }
        var offset = 0
        while offset < bytes.count {
            let n = min(capacity - used, bytes.count - offset)
            (buffer + used).copyMemory(from: base + offset, byteCount: n)
            used += n
            offset += n
            if used == capacity { try flush() }
        }
    }

    func append<T>(_ value: T) throws {
        try withUnsafeBytes(of: value) { try append($0) }
    }

    func flush() throws {
        if hashing { checksum.update(UnsafeRawBufferPointer(start: buffer, count: used)) }
        var offset = 0
        while offset < used {
            let n = Glibc_write(fd, buffer + offset, used - offset)
            if n < 0 {
                if errno == EINTR { continue }
                throw ioError("write the index file", path)
            }
            offset += n
        }
        used = 0
    }
}

@inline(__always) private func Glibc_read(_ fd: Int32, _ p: UnsafeMutableRawPointer, _ n: Int) -> Int {
    read(fd, p, n)
}

@inline(__always) private func Glibc_write(_ fd: Int32, _ p: UnsafeRawPointer, _ n: Int) -> Int {
    write(fd, p, n)
}

/// Buffered reader that checksums what it reads and fails cleanly on a short file.
private final class FileReader {
    let fd: Int32
    let path: String
    let buffer: UnsafeMutableRawPointer
    let capacity = 1 << 20
    var start = 0
    var end = 0
    var checksum = StreamChecksum()

    init(fd: Int32, path: String) {
        self.fd = fd
        self.path = path
        buffer = .allocate(byteCount: capacity, alignment: 16)
    }
    deinit { buffer.deallocate() }

    private func refill() throws {
        start = 0
        end = 0
        while true {
            let n = Glibc_read(fd, buffer, capacity)
            if n < 0 {
                if errno == EINTR { continue }
                throw ioError("read the index file", path)
            }
            if n == 0 {
                throw PolyglotError(.engineFailure, "The HNSW index file '\(path)' is truncated: it ends before its payload does.",
                                    fix: "Delete the file and rebuild the index from the source of truth (or restore a backup).")
            }
            checksum.update(UnsafeRawBufferPointer(start: buffer, count: n))
            end = n
            return
        }
    }

    func readBytes(into destination: UnsafeMutableRawPointer, count: Int) throws {
        var done = 0
        while done < count {
            if start == end { try refill() }
            let n = min(end - start, count - done)
            (destination + done).copyMemory(from: buffer + start, byteCount: n)
            start += n
            done += n
        }
    }

    func readValue<T>(_: T.Type) throws -> T {
        let p = UnsafeMutableRawPointer.allocate(byteCount: MemoryLayout<T>.size, alignment: MemoryLayout<T>.alignment)
        defer { p.deallocate() }
        try readBytes(into: p, count: MemoryLayout<T>.size)
        return p.loadUnaligned(as: T.self)
    }
}

private func metricCode(_ m: VectorMetric) -> UInt32 {
    switch m {
    case .l2: 0
    case .cosine: 1
    case .innerProduct: 2
    }
}

extension HNSWIndex {
    /// Writes the index to `path` as one file with a versioned header and a checksum.
    ///
    /// Crash-safe: the bytes go to a temporary file in the same directory, which is fsynced and renamed
    /// over `path`, then the directory is fsynced. A crash leaves either the old file or the new one.
    /// Searches may run while saving; writers wait.
    ///
    /// ```swift
    /// try index.save(to: "data/products.hnsw")
    /// ```
    public func save(to path: String) throws {
        try lock.withReadLock { try saveLocked(box.graph, to: path) }
    }

    private func saveLocked(_ g: HNSWGraph, to path: String) throws {
        let tmp = "\(path).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw ioError("create the temporary file", tmp) }
        var closed = false
        var renamed = false
        defer {
            if !closed { close(fd) }
            if !renamed { unlink(tmp) }
        }
        let n = g.nodeCount
        var upperInts = 0
        var idBytes = 0
        for i in 0..<n {
            upperInts += Int(g.levels[i]) * (g.m + 1)
            idBytes += 4 + g.ids[i].utf8.count
        }
        let payload = n * (4 + 1 + 4 + 4 * g.dimension + 4 * (1 + g.m0)) + 4 * upperInts + idBytes

        // Header: written zeroed first (without hashing), rewritten at the end with the checksum.
        let header = UnsafeMutableRawPointer.allocate(byteCount: HNSWFile.headerSize, alignment: 8)
        defer { header.deallocate() }
        header.initializeMemory(as: UInt8.self, repeating: 0, count: HNSWFile.headerSize)
        for (i, b) in HNSWFile.magic.enumerated() { header.storeBytes(of: b, toByteOffset: i, as: UInt8.self) }
        header.storeBytes(of: HNSWFile.version.littleEndian, toByteOffset: 8, as: UInt32.self)
        header.storeBytes(of: UInt32(HNSWFile.headerSize).littleEndian, toByteOffset: 12, as: UInt32.self)
        header.storeBytes(of: UInt32(g.dimension).littleEndian, toByteOffset: 16, as: UInt32.self)
        header.storeBytes(of: metricCode(g.metric).littleEndian, toByteOffset: 20, as: UInt32.self)
        header.storeBytes(of: UInt32(g.m).littleEndian, toByteOffset: 24, as: UInt32.self)
        header.storeBytes(of: UInt32(configuration.efConstruction).littleEndian, toByteOffset: 28, as: UInt32.self)
        header.storeBytes(of: UInt32(configuration.efSearch).littleEndian, toByteOffset: 32, as: UInt32.self)
        header.storeBytes(of: Int32(g.maxLevel).littleEndian, toByteOffset: 36, as: Int32.self)
        header.storeBytes(of: configuration.seed.littleEndian, toByteOffset: 40, as: UInt64.self)
        header.storeBytes(of: g.random.state.littleEndian, toByteOffset: 48, as: UInt64.self)
        header.storeBytes(of: UInt64(n).littleEndian, toByteOffset: 56, as: UInt64.self)
        header.storeBytes(of: UInt64(g.liveCount).littleEndian, toByteOffset: 64, as: UInt64.self)
        header.storeBytes(of: Int64(g.entryPoint).littleEndian, toByteOffset: 72, as: Int64.self)
        header.storeBytes(of: UInt64(payload).littleEndian, toByteOffset: 80, as: UInt64.self)

        let w = FileWriter(fd: fd, path: tmp)
        w.checksum.update(UnsafeRawBufferPointer(start: header, count: 88))
        w.checksum.update(UnsafeRawBufferPointer(start: header + 96, count: HNSWFile.headerSize - 96))
        w.hashing = false
        try w.append(UnsafeRawBufferPointer(start: header, count: HNSWFile.headerSize))
        try w.flush()
        w.hashing = true

        try w.append(UnsafeRawBufferPointer(start: g.levels, count: 4 * n))
        try w.append(UnsafeRawBufferPointer(start: g.flags, count: n))
        try w.append(UnsafeRawBufferPointer(start: g.norms, count: 4 * n))
        for i in 0..<n { try w.append(UnsafeRawBufferPointer(start: g.row(Int32(i)), count: 4 * g.dimension)) }
        for i in 0..<n { try w.append(UnsafeRawBufferPointer(start: g.links0(Int32(i)), count: 4 * (1 + g.m0))) }
        for i in 0..<n where g.levels[i] > 0 {
            try w.append(UnsafeRawBufferPointer(start: g.upper[i], count: 4 * Int(g.levels[i]) * (g.m + 1)))
        }
        for i in 0..<n {
            var id = g.ids[i]
            try w.append(UInt32(id.utf8.count).littleEndian)
            try id.withUTF8 { try w.append(UnsafeRawBufferPointer($0)) }
        }
        try w.flush()

        header.storeBytes(of: w.checksum.value.littleEndian, toByteOffset: 88, as: UInt64.self)
        guard pwrite(fd, header, HNSWFile.headerSize, 0) == HNSWFile.headerSize else {
            throw ioError("write the header of", tmp)
        }
        guard fsync(fd) == 0 else { throw ioError("fsync", tmp) }
        closed = true
        guard close(fd) == 0 else { throw ioError("close", tmp) }
        guard rename(tmp, path) == 0 else { throw ioError("rename the temporary file onto", path) }
        renamed = true
        let directory = path.lastIndex(of: "/").map { String(path[..<$0]) } ?? "."
        let dfd = open(directory.isEmpty ? "/" : directory, O_RDONLY)
        if dfd >= 0 {
            _ = fsync(dfd)
            close(dfd)
        }
    }

    /// Loads an index written by `save(to:)`.
    ///
    /// A file that is not an index, has an unsupported version, is truncated or fails its checksum throws
    /// a `PolyglotError` that says so (`.invalidArgument` for a foreign or newer file, `.engineFailure`
    /// for a damaged one); it never crashes. Rebuild the index from the source of truth in that case.
    ///
    /// ```swift
    /// let index = try HNSWIndex.load(from: "data/products.hnsw")
    /// ```
    public static func load(from path: String) throws -> HNSWIndex {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw PolyglotError(.engineFailure, "Could not open the HNSW index file '\(path)': \(errnoText()).",
                                fix: "Check the path; if the file is gone, rebuild the index from the source of truth.")
        }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ioError("stat", path) }
        let fileSize = Int(st.st_size)

        func damaged(_ why: String) -> PolyglotError {
            PolyglotError(.engineFailure, "The HNSW index file '\(path)' is damaged: \(why).",
                          fix: "Delete the file and rebuild the index from the source of truth (or restore a backup).")
        }
        func foreign(_ why: String) -> PolyglotError {
            PolyglotError(.invalidArgument, "'\(path)' is not a Polyglot HNSW index file this version can read: \(why).",
                          fix: "Point at a file written by HNSWIndex.save(to:), or rebuild the index from the source of truth.")
        }

        guard fileSize >= HNSWFile.headerSize else {
            if fileSize >= 8 {
                var m = [UInt8](repeating: 0, count: 8)
                if pread(fd, &m, 8, 0) == 8, m != HNSWFile.magic { throw foreign("it does not start with the index magic bytes") }
            }
            throw damaged("it is \(fileSize) bytes, shorter than the \(HNSWFile.headerSize)-byte header (truncated)")
        }
        let header = UnsafeMutableRawPointer.allocate(byteCount: HNSWFile.headerSize, alignment: 8)
        defer { header.deallocate() }
        guard pread(fd, header, HNSWFile.headerSize, 0) == HNSWFile.headerSize else { throw ioError("read the header of", path) }
        for (i, b) in HNSWFile.magic.enumerated() where header.load(fromByteOffset: i, as: UInt8.self) != b {
            throw foreign("it does not start with the index magic bytes")
        }
        func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: header.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
        func u64(_ o: Int) -> UInt64 { UInt64(littleEndian: header.loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
        let version = u32(8)
        guard version == HNSWFile.version else {
            throw foreign("it has format version \(version); this build reads version \(HNSWFile.version)")
        }
        guard u32(12) == UInt32(HNSWFile.headerSize) else { throw damaged("its header size field is \(u32(12))") }
        let dimension = Int(u32(16))
        let metric: VectorMetric
        switch u32(20) {
        case 0: metric = .l2
        case 1: metric = .cosine
        case 2: metric = .innerProduct
        default: throw damaged("its metric code is \(u32(20))")
        }
        let m = Int(u32(24))
        let efConstruction = Int(u32(28))
        let efSearch = Int(u32(32))
        let maxLevel = Int(Int32(bitPattern: u32(36)))
        let seed = u64(40)
        let randomState = u64(48)
        let nodeCount64 = u64(56)
        let liveCount64 = u64(64)
        let entryPoint64 = Int64(bitPattern: u64(72))
        let payload64 = u64(80)
        let storedChecksum = u64(88)

        let configuration = HNSWConfiguration(dimension: dimension, metric: metric, m: m, efConstruction: efConstruction,
                                              efSearch: efSearch, seed: seed)
        do { try configuration.validate() } catch let error as PolyglotError { throw damaged("its header holds invalid parameters (\(error.message))") }
        guard payload64 == UInt64(fileSize - HNSWFile.headerSize) else {
            if payload64 > UInt64(fileSize - HNSWFile.headerSize) {
                throw damaged("it is truncated: the header announces \(payload64) payload bytes, the file has \(fileSize - HNSWFile.headerSize)")
            }
            throw damaged("it has \(UInt64(fileSize - HNSWFile.headerSize) - payload64) unexpected bytes after the payload")
        }
        let m0 = 2 * m
        let minNodeBytes = UInt64(4 + 1 + 4 + 4 * dimension + 4 * (1 + m0) + 4)
        guard nodeCount64 <= payload64 / minNodeBytes, nodeCount64 < UInt64(Int32.max) else {
            throw damaged("its node count \(nodeCount64) does not fit its size")
        }
        let n = Int(nodeCount64)
        guard liveCount64 <= nodeCount64 else { throw damaged("its live count exceeds its node count") }
        guard (n == 0 && entryPoint64 == -1 && maxLevel == -1)
                || (n > 0 && entryPoint64 >= 0 && entryPoint64 < Int64(n) && (0...HNSWGraph.maxLevelCap).contains(maxLevel)) else {
            throw damaged("its entry point (\(entryPoint64)) or top level (\(maxLevel)) is inconsistent")
        }
        // The header part of the checksum, then the payload as it streams in.
        var headerSum = StreamChecksum()
        headerSum.update(UnsafeRawBufferPointer(start: header, count: 88))
        headerSum.update(UnsafeRawBufferPointer(start: header + 96, count: HNSWFile.headerSize - 96))
        guard lseek(fd, off_t(HNSWFile.headerSize), SEEK_SET) == off_t(HNSWFile.headerSize) else { throw ioError("seek in", path) }
        let reader = FileReader(fd: fd, path: path)
        reader.checksum = headerSum

        let g = HNSWGraph(dimension: dimension, metric: metric, m: m, efConstruction: max(efConstruction, m),
                          seed: randomState, capacity: max(16, n))
        // From here on, partially filled nodes must not be freed as if complete.
        g.nodeCount = 0
        try reader.readBytes(into: g.levels, count: 4 * n)
        try reader.readBytes(into: g.flags, count: n)
        try reader.readBytes(into: g.norms, count: 4 * n)
        for i in 0..<n {
            let r = g.row(Int32(i))
            try reader.readBytes(into: r, count: 4 * dimension)
            let f = r.assumingMemoryBound(to: Float.self)
            for j in dimension..<g.paddedDimension { f[j] = 0 }
        }
        for i in 0..<n { try reader.readBytes(into: g.links0(Int32(i)), count: 4 * (1 + m0)) }
        var upperOK = true
        for i in 0..<n {
            let level = Int(Int32(littleEndian: g.levels[i]))
            g.levels[i] = Int32(level)
            g.upper[i] = nil
            guard (0...HNSWGraph.maxLevelCap).contains(level) else {
                upperOK = false
                continue
            }
            if level > 0 {
                let count = level * (m + 1)
                let p = UnsafeMutablePointer<Int32>.allocate(capacity: count)
                g.upper[i] = p
                g.upperBytes += count * 4
            }
        }
        g.nodeCount = n   // every upper[i] is now either nil or allocated, so deinit is safe
        guard upperOK else { throw damaged("a node has a level outside 0...\(HNSWGraph.maxLevelCap)") }
        for i in 0..<n where g.levels[i] > 0 {
            try reader.readBytes(into: g.upper[i]!, count: 4 * Int(g.levels[i]) * (m + 1))
        }
        var ids: [String] = []
        ids.reserveCapacity(n)
        var idBuffer: [UInt8] = []
        for _ in 0..<n {
            let length = Int(UInt32(littleEndian: try reader.readValue(UInt32.self)))
            guard length <= fileSize else { throw damaged("an id length (\(length)) exceeds the file size") }
            idBuffer = [UInt8](repeating: 0, count: length)
            if length > 0 { try idBuffer.withUnsafeMutableBytes { try reader.readBytes(into: $0.baseAddress!, count: length) } }
            guard let id = String(validating: idBuffer, as: UTF8.self) else { throw damaged("an id is not valid UTF-8") }
            ids.append(id)
        }
        guard reader.checksum.value == storedChecksum else {
            throw damaged("its checksum does not match its contents")
        }

        // Structural checks, so that even a crafted file with a valid checksum cannot crash a search.
        var live = 0
        var nodeOf: [String: Int32] = [:]
        nodeOf.reserveCapacity(Int(liveCount64))
        var topLevel = -1
        for i in 0..<n {
            let level = Int(g.levels[i])
            topLevel = max(topLevel, level)
            guard g.flags[i] <= 1 else { throw damaged("node \(i) has unknown flags") }
            guard g.norms[i].isFinite else { throw damaged("node \(i) has a non-finite norm") }
            let r = g.row(Int32(i)).assumingMemoryBound(to: Float.self)
            for j in 0..<dimension where !r[j].isFinite { throw damaged("node \(i) has a non-finite component") }
            for layer in 0...level {
                let list = g.links(Int32(i), layer: layer)
                let count = Int(list.pointee)
                guard count >= 0 && count <= g.maxNeighbours(layer) else {
                    throw damaged("node \(i) has \(count) neighbours on layer \(layer)")
                }
                for j in 0..<count {
                    let nb = Int(list[j + 1])
                    guard nb >= 0 && nb < n && Int(g.levels[nb]) >= layer else {
                        throw damaged("node \(i) links to an invalid node on layer \(layer)")
                    }
                }
            }
            if g.flags[i] & 1 == 0 {
                live += 1
                guard nodeOf.updateValue(Int32(i), forKey: ids[i]) == nil else {
                    throw damaged("the id '\(ids[i])' appears twice")
                }
            }
        }
        guard live == Int(liveCount64) else { throw damaged("its live count does not match its flags") }
        guard n == 0 || (topLevel == maxLevel && Int(g.levels[Int(entryPoint64)]) == maxLevel) else {
            throw damaged("its entry point is not on the top level")
        }
        g.ids = ids
        g.nodeOf = nodeOf
        g.liveCount = live
        g.deletedCount = n - live
        g.entryPoint = Int32(entryPoint64)
        g.maxLevel = maxLevel
        return HNSWIndex(configuration: configuration, graph: g)
    }
}
