//! Where a trunk's requests go, as RFC 3263 input: its outbound proxy when it has one, else its host,
//! with the trunk's port and transport.

use pbx_sip::rfc3263::{Destination, SipTransport};
use storage::model::Transport;
use storage::routing::Trunk;

fn sip_transport(t: Transport) -> SipTransport {
    match t {
        Transport::Udp => SipTransport::Udp,
        Transport::Tcp => SipTransport::Tcp,
        Transport::Tls => SipTransport::Tls,
    }
}

/// `host[:port]`, an IPv6 address in brackets.
pub(crate) fn host_port(text: &str) -> (String, Option<u16>) {
    if let Some(rest) = text.strip_prefix('[')
        && let Some((host, after)) = rest.split_once(']')
    {
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return (host.to_owned(), port);
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host.to_owned(), port.parse().ok()),
        _ => (text.to_owned(), None),
    }
}

/// The trunk's outbound proxy, if it has one.
pub(crate) fn proxy(t: &Trunk) -> Option<(String, Option<u16>)> {
    t.outbound_proxy
        .as_deref()
        .filter(|p| !p.is_empty())
        .map(host_port)
}

/// The provider's own address: its host, port and transport.
pub(crate) fn provider(t: &Trunk) -> Destination {
    Destination {
        host: t.host.clone(),
        port: t.port,
        transport: t.transport.map(sip_transport),
        secure: false,
    }
}

/// Where requests are sent: the outbound proxy, else the provider.
pub(crate) fn next_hop(t: &Trunk) -> Destination {
    match proxy(t) {
        Some((host, port)) => Destination {
            host,
            port,
            ..provider(t)
        },
        None => provider(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_are_split_ipv6_in_brackets() {
        assert_eq!(
            host_port("proxy.example:5070"),
            ("proxy.example".into(), Some(5070))
        );
        assert_eq!(host_port("proxy.example"), ("proxy.example".into(), None));
        assert_eq!(
            host_port("[2001:db8::1]:5061"),
            ("2001:db8::1".into(), Some(5061))
        );
        assert_eq!(host_port("2001:db8::1"), ("2001:db8::1".into(), None));
    }
}
