import Glibc
import ReactorCore
import ReactorServices

/// Serves daytime over TCP and UDP on one port, with a stricter UDP limit than the
/// default, until SIGINT.
func serveDaytime(port: Int) throws {
    let reactor = try Reactor()
    var limits = ReplyGuardOptions()
    limits.repliesPerSecond = 5
    limits.burst = 10
    let replyGuard = try ReplyGuard(limits)
    let listener = try reactor.listen(host: "127.0.0.1", port: port) { _ in DaytimeHandler() }
    let socket = try reactor.bindUDP(
        host: "127.0.0.1", port: listener.address.port, handler: DaytimeDatagramHandler(replyGuard: replyGuard))
    print("daytime on \(listener.address) (TCP) and \(socket.localAddress) (UDP)")
    try reactor.onSignal(SIGINT) { reactor.shutdownGracefully() }
    try reactor.run()
}
