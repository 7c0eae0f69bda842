import Foundation
import Polyglot

/// A deterministic generated shop: products, orders, co-purchases and page views.
enum SampleShop {
    static let categories = ["shoes", "hats", "jackets", "bags", "socks"]
    static let adjectives = ["red", "blue", "black", "waterproof", "light", "warm", "classic", "trail", "city", "vintage", "organic", "reflective"]
    static let materials = ["leather", "wool", "canvas", "nylon", "cotton", "suede", "denim", "fleece"]
    static let nouns: [String: [String]] = [
        "shoes": ["boots", "sneakers", "runners", "loafers"], "hats": ["beanie", "cap", "fedora", "bucket hat"],
        "jackets": ["parka", "raincoat", "blazer", "windbreaker"], "bags": ["backpack", "tote", "duffel", "messenger bag"],
        "socks": ["crew socks", "hiking socks", "ankle socks", "wool socks"],
    ]
    static let uses = ["for winter", "for the city", "for hiking", "for running", "for rainy days", "for travel", "for everyday wear"]

    struct Product {
        let id: String
        let json: JSON
        let price: Double
    }

    static func pick<T>(_ items: [T], _ rng: inout SeededRandom) -> T { items[Int(rng.next() % UInt64(items.count))] }

    static func products(count: Int, rng: inout SeededRandom) -> [Product] {
        (0..<count).map { i in
            let category = pick(categories, &rng)
            let name = "\(pick(adjectives, &rng).capitalized) \(pick(materials, &rng)) \(pick(nouns[category]!, &rng))"
            let price = (Double(rng.next() % 20_000) / 100 + 5).rounded()
            let description = "\(name) \(pick(uses, &rng)), made of \(pick(materials, &rng)); \(pick(adjectives, &rng)) and \(pick(adjectives, &rng))."
            let id = String(format: "p%05d", i)
            let json: JSON = ["name": .string(name), "description": .string(description), "category": .string(category),
                              "price": .number(price), "stock": .number(Double(rng.next() % 50 + 1))]
            return Product(id: id, json: json, price: price)
        }
    }

    static func orders(count: Int, products: [Product], rng: inout SeededRandom) -> [Row] {
        let start = Date().addingTimeInterval(-30 * 86_400).timeIntervalSince1970
        return (0..<count).map { i in
            let p = pick(products, &rng)
            let q = Int(rng.next() % 3) + 1
            return ["id": .number(Double(i + 1)), "customer": .string("customer-\(rng.next() % 300)"), "product": .string(p.id),
                    "quantity": .number(Double(q)), "total": .number((p.price * Double(q) * 100).rounded() / 100),
                    "created_at": .number(start + Double(rng.next() % (30 * 86_400)))]
        }
    }

    static func boughtTogether(orders: [Row]) -> [Edge] {
        // Orders of the same customer count as bought together.
        var byCustomer: [String: [String]] = [:]
        for o in orders { byCustomer[o["customer"]?.stringValue ?? "", default: []].append(o["product"]?.stringValue ?? "") }
        var edges: [String: Edge] = [:]
        for products in byCustomer.values {
            for (a, b) in zip(products, products.dropFirst()) where a != b {
                let key = a < b ? "\(a)|\(b)" : "\(b)|\(a)"
                edges[key, default: Edge(from: min(a, b), to: max(a, b), label: "bought_with", weight: 0)].weight += 1
            }
        }
        return edges.values.sorted { ($0.from, $0.to) < ($1.from, $1.to) }
    }

    static func pageViews(from: Date, to: Date, rng: inout SeededRandom) -> [Sample] {
        let pages = ["/home", "/search", "/product", "/cart", "/checkout"]
        var out: [Sample] = []
        var t = from.timeIntervalSince1970
        while t < to.timeIntervalSince1970 {
            let hour = Calendar.current.component(.hour, from: Date(timeIntervalSince1970: t))
            // Busier in the day than at night.
            let rate = (8...22).contains(hour) ? 3.0 : 0.5
            t += Double(rng.next() % 1000) / 1000 * 60 / rate
            out.append(Sample(series: pages[min(pages.count - 1, Int(rng.next() % 8) / 2)], time: Date(timeIntervalSince1970: t), value: 1))
        }
        return out
    }
}
