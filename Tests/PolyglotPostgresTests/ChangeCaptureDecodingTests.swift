import Foundation
import NIOCore
import Polyglot
@testable import PolyglotPostgres
import Testing

/// The pieces of change capture that need no server: the pgoutput decoder, text values, LSNs, names, cursors.
@Suite struct PostgresCaptureDecoding {
    func message(_ build: (inout ByteBuffer) -> Void) -> ByteBuffer {
        var b = ByteBuffer()
        build(&b)
        return b
    }

    func cString(_ s: String, _ b: inout ByteBuffer) { b.writeString(s); b.writeInteger(UInt8(0)) }
    func text(_ s: String, _ b: inout ByteBuffer) { b.writeInteger(UInt8(ascii: "t")); b.writeInteger(Int32(s.utf8.count)); b.writeString(s) }

    @Test func theDecoderCollectsWholeTransactionsAndTheOldRowOfAnUpdate() throws {
        var d = PgOutputDecoder()
        try d.feed(message { b in b.writeInteger(UInt8(ascii: "B")); b.writeInteger(UInt64(0x3_0000_0100)); b.writeInteger(Int64(1_000_000)); b.writeInteger(UInt32(77)) })
        try d.feed(message { b in
            b.writeInteger(UInt8(ascii: "R")); b.writeInteger(UInt32(16385)); cString("app", &b); cString("items", &b)
            b.writeInteger(UInt8(ascii: "f")); b.writeInteger(Int16(2))
            b.writeInteger(UInt8(1)); cString("id", &b); b.writeInteger(UInt32(25)); b.writeInteger(Int32(-1))
            b.writeInteger(UInt8(0)); cString("body", &b); b.writeInteger(UInt32(3802)); b.writeInteger(Int32(-1))
        })
        try d.feed(message { b in
            b.writeInteger(UInt8(ascii: "U")); b.writeInteger(UInt32(16385))
            b.writeInteger(UInt8(ascii: "O")); b.writeInteger(Int16(2)); text("a", &b); text("{\"x\": 1}", &b)
            b.writeInteger(UInt8(ascii: "N")); b.writeInteger(Int16(2)); text("a", &b); b.writeInteger(UInt8(ascii: "u"))
        })
        #expect(d.transactions.isEmpty, "a transaction is complete only at its commit")
        try d.feed(message { b in
            b.writeInteger(UInt8(ascii: "C")); b.writeInteger(UInt8(0)); b.writeInteger(UInt64(0x3_0000_0100)); b.writeInteger(UInt64(0x3_0000_0130)); b.writeInteger(Int64(1_000_000))
        })
        let t = try #require(d.transactions.first)
        #expect(t.commitLSN == 0x3_0000_0100 && t.endLSN == 0x3_0000_0130 && t.xid == 77)
        #expect(t.changes == [.update(relation: 16385, old: [.text("a"), .text("{\"x\": 1}")], new: [.text("a"), .unchangedToast])])
        #expect(d.relations[16385]?.columns.map(\.name) == ["id", "body"] && d.relations[16385]?.columns.first?.isKey == true)
        #expect(throws: PolyglotError.self) { try d.feed(message { $0.writeInteger(UInt8(ascii: "Z")) }) }
    }

    @Test func textValuesBecomeJSONLikeTheEnginesReads() throws {
        #expect(try PGText.json("t", typeOID: 16) == true)
        #expect(try PGText.json("-42", typeOID: 20) == -42)
        #expect(try PGText.json("2.5", typeOID: 701) == 2.5)
        #expect(try PGText.json("NaN", typeOID: 701) == "NaN")
        #expect(try PGText.json("{\"a\": [1, null]}", typeOID: 3802) == ["a": [1, .null]])
        #expect(try PGText.json("\\x00ff10", typeOID: 17) == .string(Data([0, 255, 16]).base64EncodedString()))
        #expect(try PGText.json("2024-01-02 03:04:05.5+00", typeOID: 1184, fieldType: .timestamp) == .number(1_704_164_645.5))
        #expect(try PGText.json("2024-01-02 05:04:05.5+02", typeOID: 1184, fieldType: .timestamp) == .number(1_704_164_645.5))
        #expect(try PGText.json("1969-12-31 23:59:59", typeOID: 1114, fieldType: .timestamp) == -1)
        #expect(try PGText.json("2024-01-02", typeOID: 1082, fieldType: .timestamp) == .number(1_704_153_600))
        #expect(try PGText.json("2024-01-02 03:04:05+00", typeOID: 1184) == .string(Timestamp.text(Date(timeIntervalSince1970: 1_704_164_645))))
        #expect(try PGText.json("infinity", typeOID: 1184, fieldType: .timestamp) == "infinity")
        #expect(try PGText.json("(1,2)", typeOID: 600) == "(1,2)")
    }

    @Test func lsnsCursorsAndSlotNames() throws {
        #expect(LSN.text(0x16_B374_D848) == "16/B374D848" && LSN.parse("16/B374D848") == 0x16_B374_D848)
        let c = CaptureCursor(commitLSN: 500, index: 3, endLSN: 0, seenWAL: 900)
        let back = try CaptureCursor(c.cursor)
        #expect(back == c && back.seenWAL == 900 && back.endLSN == 0)
        #expect(CaptureCursor() < c && c < CaptureCursor(commitLSN: 500, index: 4) && c < CaptureCursor(commitLSN: 501, index: 0))
        #expect(throws: PolyglotError.self) { try CaptureCursor(ChangeCursor(state: "a|b|3")) }
        let a = PostgresEngine.captureSlotName(database: "app", schema: "public", consumer: "orders@search")
        let b = PostgresEngine.captureSlotName(database: "other", schema: "public", consumer: "orders@search")
        #expect(a.hasPrefix("polyglot_public_orders_search_") && a != b)
        let long = PostgresEngine.captureSlotName(database: "app", schema: String(repeating: "S", count: 70), consumer: "ÿ")
        #expect(long.count <= 63 && long.allSatisfy { $0 == "_" || ($0.isASCII && ($0.isLowercase || $0.isNumber)) }, "\(long)")
    }
}
