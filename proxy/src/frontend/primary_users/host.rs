//! An account's `Host` as the servers match it against a client's address, so that an account
//! loaded from the primary is served only to clients the account admits: the proxy checks the
//! client's address itself, because the servers see only the proxy's.
//!
//! Addresses only: the proxy does not resolve names, so an account whose `Host` is a host name
//! (other than `localhost`) cannot be matched and is not loaded.

use std::cmp::Reverse;
use std::net::{IpAddr, Ipv4Addr};

/// A `Host` value the proxy can match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// `localhost`: a loopback client (127.0.0.0/8, ::1).
    Localhost,
    /// `a.b.c.d/m.m.m.m`: an IPv4 network given with its netmask.
    Mask { net: u32, mask: u32 },
    /// An address or a `LIKE` pattern over its text (`%` any run, `_` one character);
    /// `%` (or an empty `Host`) admits every address.
    Like(String),
}

impl HostPattern {
    /// The pattern for a `Host` value, or `None` for a host name the proxy cannot match.
    pub fn parse(host: &str) -> Option<HostPattern> {
        if host.is_empty() {
            return Some(HostPattern::Like("%".into()));
        }
        if host.eq_ignore_ascii_case("localhost") {
            return Some(HostPattern::Localhost);
        }
        if let Some((net, mask)) = host.split_once('/') {
            let net: Ipv4Addr = net.parse().ok()?;
            let mask: Ipv4Addr = mask.parse().ok()?;
            let (net, mask) = (u32::from(net), u32::from(mask));
            return Some(HostPattern::Mask {
                net: net & mask,
                mask,
            });
        }
        let ipv6 = host.contains(':');
        let address_chars = host
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '%' | '_'));
        if ipv6 || address_chars {
            return Some(HostPattern::Like(host.to_ascii_lowercase()));
        }
        None
    }

    /// Whether a client at `ip` matches (an IPv4-mapped IPv6 address as its IPv4 form).
    pub fn matches(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        match self {
            HostPattern::Localhost => ip.is_loopback(),
            HostPattern::Mask { net, mask } => match ip {
                IpAddr::V4(v4) => u32::from(v4) & mask == *net,
                IpAddr::V6(_) => false,
            },
            HostPattern::Like(p) => like(p, &ip.to_string()),
        }
    }

    /// Sort key: the most specific pattern first, as a server picks among a user's accounts
    /// (exact addresses, then netmasks, then patterns with the longest literal prefix, `%`
    /// last).
    pub fn rank(&self) -> (u8, Reverse<usize>) {
        match self {
            HostPattern::Localhost => (0, Reverse(0)),
            HostPattern::Mask { mask, .. } => (1, Reverse(mask.count_ones() as usize)),
            HostPattern::Like(p) => match p.find(['%', '_']) {
                None => (0, Reverse(0)),
                Some(0) if p == "%" => (3, Reverse(0)),
                Some(i) => (2, Reverse(i)),
            },
        }
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// SQL `LIKE` without escapes: `%` any run of characters, `_` exactly one.
fn like(pattern: &str, text: &str) -> bool {
    let glob: String = pattern
        .chars()
        .map(|c| match c {
            '%' => '*',
            '_' => '?',
            c => c,
        })
        .collect();
    router::config::glob_match(&glob, text)
}

#[cfg(test)]
mod test {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn patterns_match_as_a_server_does() {
        let any = HostPattern::parse("%").expect("pattern");
        assert!(any.matches(ip("192.0.2.7")) && any.matches(ip("::1")));
        assert_eq!(HostPattern::parse(""), Some(any));
        let net = HostPattern::parse("10.1.%").expect("pattern");
        assert!(net.matches(ip("10.1.2.3")));
        assert!(!net.matches(ip("10.11.2.3")));
        assert!(net.matches(ip("::ffff:10.1.0.9")), "IPv4-mapped");
        let one = HostPattern::parse("10.1.2._").expect("pattern");
        assert!(one.matches(ip("10.1.2.3")) && !one.matches(ip("10.1.2.33")));
        let mask = HostPattern::parse("10.1.2.0/255.255.255.0").expect("pattern");
        assert!(mask.matches(ip("10.1.2.200")) && !mask.matches(ip("10.1.3.1")));
        let local = HostPattern::parse("localhost").expect("pattern");
        assert!(local.matches(ip("127.0.0.1")) && local.matches(ip("::1")));
        assert!(!local.matches(ip("10.0.0.1")));
        let exact = HostPattern::parse("127.0.0.1").expect("pattern");
        assert!(exact.matches(ip("127.0.0.1")) && !exact.matches(ip("127.0.0.2")));
        let v6 = HostPattern::parse("::1").expect("pattern");
        assert!(v6.matches(ip("::1")));
        assert_eq!(HostPattern::parse("app1.example.com"), None);
        assert_eq!(HostPattern::parse("%.example.com"), None);
        assert_eq!(HostPattern::parse("10.0.0.0/bad"), None);
    }

    #[test]
    fn the_most_specific_pattern_ranks_first() {
        let mut v: Vec<HostPattern> = ["%", "10.%", "10.1.%", "10.1.2.3", "10.1.0.0/255.255.0.0"]
            .iter()
            .filter_map(|h| HostPattern::parse(h))
            .collect();
        v.sort_by_key(HostPattern::rank);
        let order: Vec<String> = v.iter().map(|p| format!("{p:?}")).collect();
        assert_eq!(
            order,
            [
                "Like(\"10.1.2.3\")",
                "Mask { net: 167837696, mask: 4294901760 }",
                "Like(\"10.1.%\")",
                "Like(\"10.%\")",
                "Like(\"%\")"
            ]
        );
    }
}
