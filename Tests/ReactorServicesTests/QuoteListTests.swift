// Quote lists: the fortune file format, CRLF line ends, and the 512-byte limit.

import Foundation
import ReactorServices
import ReactorTestSupport
import Testing

@Suite("quote lists")
struct QuoteListTests {
    @Test("a fortune file: quotes between % lines, blank lines around them dropped, CRLF line ends")
    func fortuneFile() throws {
        let path = try temporaryFile("First quote.\n  -- Someone\n%\n\n%\n\nSecond, after a blank line.\r\n\n%\nThird\n")
        let list = try QuoteList(contentsOfFile: path)
        #expect(list.replies.map { String(decoding: $0, as: UTF8.self) } == [
            "First quote.\r\n  -- Someone\r\n", "Second, after a blank line.\r\n", "Third\r\n",
        ])
    }

    @Test("a quote of 511 bytes is accepted; one of 512 is refused, naming the file and line")
    func sizeLimit() throws {
        let fits = String(repeating: "a", count: 509)
        #expect(try QuoteList([fits]).replies[0].count == 511)
        let path = try temporaryFile("short\n%\nalso short\n%\n" + String(repeating: "b", count: 510) + "\n")
        let error = #expect(throws: QuoteListError.self) { try QuoteList(contentsOfFile: path) }
        #expect(error?.description.contains("\(path): line 5") == true, "\(String(describing: error))")
        #expect(error?.description.contains("512") == true)
        #expect(throws: QuoteListError.self) { try QuoteList(["x\n" + String(repeating: "c", count: 508)]) }
    }

    @Test("a missing file, or one with no quotes, is a clear error")
    func badFiles() throws {
        let missing = #expect(throws: QuoteListError.self) { try QuoteList(contentsOfFile: "/nonexistent/quotes.txt") }
        #expect(missing?.description == "/nonexistent/quotes.txt: No such file or directory")
        let empty = try temporaryFile("\n%\n  \n%\n")
        let none = #expect(throws: QuoteListError.self) { try QuoteList(contentsOfFile: empty) }
        #expect(none?.description.contains("no quotes") == true)
    }
}
