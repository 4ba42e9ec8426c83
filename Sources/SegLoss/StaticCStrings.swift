// StaticCStrings — the C strings the API hands out: made once, never freed.
import CSegLoss
import SegLossCore

// Immutable after their one-time, thread-safe initialization: safe to share (nonisolated).
enum StaticCStrings {
    /// "MAJOR.MINOR.PATCH", from the header's macros (the version lives only there).
    nonisolated(unsafe) static let version = make("\(SEGLOSS_VERSION_MAJOR).\(SEGLOSS_VERSION_MINOR).\(SEGLOSS_VERSION_PATCH)")

    nonisolated(unsafe) static let kernelName = make(KernelLevel.active.name)

    /// Messages for statuses 0 ... lastStatus; index lastStatus + 1 is the unknown one.
    private static let lastStatus = 8
    nonisolated(unsafe) private static let statusMessages: [UnsafePointer<CChar>] = (0...lastStatus + 1).map { raw in
        raw == 0 ? make("success") : make(SegLossError(rawValue: CInt(raw)).description)
    }

    static func status(_ status: segloss_status) -> UnsafePointer<CChar> {
        let raw = Int(status.rawValue)
        return statusMessages[raw <= lastStatus ? raw : lastStatus + 1]
    }

    private static func make(_ text: String) -> UnsafePointer<CChar> {
        let bytes = Array(text.utf8CString)
        let storage = UnsafeMutablePointer<CChar>.allocate(capacity: bytes.count)
        storage.initialize(from: bytes, count: bytes.count)
        return UnsafePointer(storage)
    }
}
