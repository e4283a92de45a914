/// Slots for one batch of datagrams: their `Datagram` headers and the bytes they
/// point at. A reactor keeps one for receiving, shared by all its UDP sockets (they
/// receive one at a time, and a datagram is only lent for its callback), so a socket
/// costs no receive memory of its own. Each ``UDPSocket`` keeps a smaller one for the
/// replies it batches.
final class DatagramArea {
    let slots: UnsafeMutableBufferPointer<Datagram>
    let storage: UnsafeMutableRawBufferPointer
    let slotSize: Int

    init(count: Int, slotSize: Int) {
        self.slotSize = slotSize
        slots = .allocate(capacity: count)
        slots.initialize(repeating: Datagram())
        // Pages are touched only as datagrams land in them: small datagrams cost a page
        // per slot, however large the slots.
        storage = .allocate(byteCount: count * slotSize, alignment: 16)
        for index in 0..<count {
            slots[index].data = storage.baseAddress! + index * slotSize
            slots[index].capacity = slotSize
        }
    }

    deinit {
        slots.deallocate()
        storage.deallocate()
    }

    var count: Int { slots.count }
}

extension Reactor {
    /// The shared receive area, grown to hold `count` slots of `slotSize` bytes.
    func receiveArea(count: Int, slotSize: Int) -> DatagramArea {
        if let area = datagramReceiveArea, area.count >= count, area.slotSize >= slotSize { return area }
        let area = DatagramArea(
            count: Swift.max(count, datagramReceiveArea?.count ?? 0),
            slotSize: Swift.max(slotSize, datagramReceiveArea?.slotSize ?? 0))
        datagramReceiveArea = area
        return area
    }
}
