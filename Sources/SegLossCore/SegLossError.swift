// SegLossError — the core's error type; its raw values are the C API's segloss_status.

/// Why a call failed. A `RawRepresentable` over `CInt` whose raw values are exactly those
/// of `segloss_status` in include/segloss.h (the ABI layer converts; tests check both agree).
public struct SegLossError: Error, RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: CInt
    public init(rawValue: CInt) { self.rawValue = rawValue }

    /// An input or output pointer is NULL.
    public static let nullPointer = SegLossError(rawValue: 1)
    /// There are no elements: the mean over none is undefined.
    public static let emptyInput = SegLossError(rawValue: 2)
    /// A weight, smoothing term or upstream gradient is out of its domain.
    public static let invalidArgument = SegLossError(rawValue: 3)
    /// Some prediction is outside [0, 1] or NaN.
    public static let predOutOfRange = SegLossError(rawValue: 4)
    /// Some target is outside [0, 1] or NaN.
    public static let targetOutOfRange = SegLossError(rawValue: 5)
    /// The element count is larger than any buffer can be.
    public static let countTooLarge = SegLossError(rawValue: 6)
    /// The options of the general API are invalid (unknown size or enum, a value out of its
    /// domain, or an undefined combination).
    public static let invalidOptions = SegLossError(rawValue: 7)
    /// The shape descriptor of the general API is invalid (an unknown dtype or mask layout).
    public static let invalidShape = SegLossError(rawValue: 8)

    /// The message `segloss_status_string` returns for this error.
    public var description: String {
        switch self {
        case .nullPointer: return "a pointer argument is NULL"
        case .emptyInput: return "count is 0: the loss of no elements is undefined"
        case .invalidArgument:
            return "invalid argument: weights and smooth must be finite and >= 0, grad_loss finite"
        case .predOutOfRange: return "all elements of pred should be between 0 and 1 (and not NaN)"
        case .targetOutOfRange: return "all elements of target should be between 0 and 1 (and not NaN)"
        case .countTooLarge: return "count is too large: count * sizeof(float) exceeds PTRDIFF_MAX"
        case .invalidOptions:
            return "invalid options: unknown struct_size or enum value, a parameter out of its domain, or an undefined combination"
        case .invalidShape:
            return "invalid shape: unknown dtype or mask layout, or a dtype not allowed for that array"
        default: return "unknown segloss status"
        }
    }
}
