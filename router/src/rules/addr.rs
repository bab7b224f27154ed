//! A rule's `client_addr`: one address, or a CIDR block (`10.0.0.0/8`, `fd00::/8`).

use std::net::IpAddr;

/// An address or a block of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrMatch {
    net: IpAddr,
    bits: u8,
}

impl AddrMatch {
    /// Parses `a.b.c.d`, `a.b.c.d/n`, an IPv6 address or `v6/n`.
    pub fn parse(s: &str) -> Result<AddrMatch, String> {
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let net: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("{s:?} is not an IP address or CIDR block"))?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => b
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|b| *b <= max)
                .ok_or_else(|| format!("{s:?}: the prefix length must be 0-{max}"))?,
        };
        Ok(AddrMatch { net, bits })
    }

    /// Whether `a` is this address or in this block (an IPv4-mapped IPv6 client counts as
    /// its IPv4 address).
    pub fn contains(&self, a: IpAddr) -> bool {
        let a = match a {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(a, IpAddr::V4),
            v4 => v4,
        };
        match (self.net, a) {
            (IpAddr::V4(n), IpAddr::V4(a)) => prefix_eq(
                u128::from(u32::from(n)) << 96,
                u128::from(u32::from(a)) << 96,
                self.bits,
            ),
            (IpAddr::V6(n), IpAddr::V6(a)) => prefix_eq(u128::from(n), u128::from(a), self.bits),
            _ => false,
        }
    }
}

fn prefix_eq(n: u128, a: u128, bits: u8) -> bool {
    if bits == 0 {
        return true;
    }
    let mask = u128::MAX << (128 - u32::from(bits));
    n & mask == a & mask
}

#[cfg(test)]
mod test {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn exact_cidr_v6_and_mapped() {
        let m = AddrMatch::parse("10.1.0.0/16").unwrap();
        assert!(m.contains(ip("10.1.2.3")));
        assert!(!m.contains(ip("10.2.0.1")));
        assert!(m.contains(ip("::ffff:10.1.9.9")));
        let one = AddrMatch::parse("127.0.0.1").unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let v6 = AddrMatch::parse("fd00::/8").unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert!(AddrMatch::parse("0.0.0.0/0")
            .unwrap()
            .contains(ip("8.8.8.8")));
        for bad in ["", "10.0.0.0/33", "nope", "10.0.0.0/x", "::/129"] {
            assert!(AddrMatch::parse(bad).is_err(), "{bad}");
        }
    }
}
