import Foundation

/// Writing reports: creates the folder, names the failure.
public enum BenchFiles {
    /// Writes `text` to `path`, creating missing folders.
    public static func write(_ text: String, to path: String) throws(BenchError) {
        let url = URL(fileURLWithPath: path)
        do {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(text.utf8).write(to: url)
        } catch {
            throw BenchError("cannot write \(path): \(error.localizedDescription)")
        }
    }
}
