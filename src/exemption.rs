//! Who does not need MFA: `exempt_networks`, `exempt_groups` and `require_groups`.
//!
//! An exempt login gets `PAM_IGNORE` without a prompt (`reason=exempt`), so the shipped stacks
//! (`[success=done ignore=ignore default=die]` followed by `pam_permit`) let it through with the
//! SSH key alone. Every uncertainty resolves to "MFA required": a host name never matches a
//! network (only a literal `PAM_RHOST` address does; sshd passes a name with `UseDNS yes`), a
//! link-local address with a scope (`fe80::1%eth0`) never matches, an account that does not
//! exist or whose groups cannot be read is never exempt, and invalid settings are config errors
//! that deny every login.
//!
//! A client address that is loopback or one of this host's own addresses is never exempt by
//! network: with TCP forwarding (sshd's default) anyone who has *some* account can relay a
//! connection through the server to itself and would then log in as any other user with that
//! user's key alone. IPv4-mapped IPv6 addresses are compared as IPv4, and `::1` and
//! `127.0.0.1` as the same loopback.
#![forbid(unsafe_code)]

use std::ffi::CString;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::user_name::UserName;

/// The exemption rules, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Exemptions {
    /// If not empty, only members of these groups need MFA.
    pub require_groups: Vec<String>,
    /// Members of these groups never need MFA.
    pub exempt_groups: Vec<String>,
    /// Logins from these networks never need MFA.
    pub exempt_networks: Vec<Network>,
}

/// Why a login needs no MFA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exemption {
    /// `PAM_RHOST` is inside this `exempt_networks` entry.
    Network(Network),
    /// The user is a member of this `exempt_groups` entry.
    Group(String),
    /// `require_groups` is set and the user is in none of them.
    NotInRequiredGroups,
}

impl fmt::Display for Exemption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Network(net) => write!(f, "rhost in exempt_networks {net}"),
            Self::Group(g) => write!(f, "member of exempt group {g}"),
            Self::NotInRequiredGroups => f.write_str("not in require_groups"),
        }
    }
}

/// The outcome of [`Exemptions::check`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verdict {
    /// Why MFA is not needed; `None`: MFA is required.
    pub exempt: Option<Exemption>,
    /// A network rule matched, but the address is loopback or this host's own, so it was not
    /// applied (reported in the audit line so the administrator can fix the rule).
    pub refused_local: Option<(IpAddr, Network)>,
}

impl Exemptions {
    /// Whether `user` logging in from `rhost` needs MFA. `groups_of` returns the user's group
    /// names, `None` when the account does not exist or its groups cannot be read (then the user
    /// is never exempt by group); `is_local` says whether an address is this host's own.
    pub fn check(
        &self,
        user: &UserName,
        rhost: Option<&str>,
        groups_of: impl Fn(&UserName) -> Option<Vec<String>>,
        is_local: impl Fn(IpAddr) -> bool,
    ) -> Verdict {
        let mut verdict = Verdict::default();
        if let Some(addr) = rhost.and_then(parse_addr)
            && let Some(net) = self.exempt_networks.iter().find(|n| n.contains(addr))
        {
            if addr.is_loopback() || is_local(addr) {
                verdict.refused_local = Some((addr, *net));
            } else {
                verdict.exempt = Some(Exemption::Network(*net));
                return verdict;
            }
        }
        if self.exempt_groups.is_empty() && self.require_groups.is_empty() {
            return verdict;
        }
        let Some(groups) = groups_of(user) else {
            return verdict;
        };
        if let Some(g) = self.exempt_groups.iter().find(|g| groups.contains(g)) {
            verdict.exempt = Some(Exemption::Group(g.clone()));
        } else if !self.require_groups.is_empty()
            && !self.require_groups.iter().any(|g| groups.contains(g))
        {
            verdict.exempt = Some(Exemption::NotInRequiredGroups);
        }
        verdict
    }

    /// The `exempt_networks` entries that contain loopback or one of `own` addresses: rules
    /// that are never applied to those addresses (for `doctor`).
    pub fn local_networks(&self, own: &[IpAddr]) -> Vec<Network> {
        let loopback = [
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
        ];
        self.exempt_networks
            .iter()
            .filter(|n| loopback.iter().chain(own).any(|a| n.contains(*a)))
            .copied()
            .collect()
    }

    /// Whether any rule is set (to skip the group lookup entirely otherwise).
    pub fn is_empty(&self) -> bool {
        self.require_groups.is_empty()
            && self.exempt_groups.is_empty()
            && self.exempt_networks.is_empty()
    }
}

/// The user's groups (primary and supplementary) from NSS; `None` if the account does not
/// exist or a lookup fails.
pub fn nss_groups(user: &UserName) -> Option<Vec<String>> {
    let account = nix::unistd::User::from_name(user.as_str()).ok()??;
    let name = CString::new(user.as_str()).ok()?;
    let gids = nix::unistd::getgrouplist(&name, account.gid).ok()?;
    gids.into_iter()
        .map(|gid| {
            nix::unistd::Group::from_gid(gid)
                .ok()
                .flatten()
                .map(|g| g.name)
        })
        .collect()
}

/// This host's own addresses (every interface, up or down), canonical; empty when they cannot
/// be read (loopback is recognised separately, so that failure never exempts it).
pub fn own_addresses() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter_map(|ifa| ifa.address)
        .filter_map(|a| {
            a.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        })
        .map(|a| a.to_canonical())
        .collect()
}

/// A literal address; `PAM_RHOST` may also be a host name, which never matches, and a scoped
/// link-local address (`fe80::1%lo`) does not parse, so it never matches either.
fn parse_addr(rhost: &str) -> Option<IpAddr> {
    let addr = IpAddr::from_str(rhost.trim_start_matches('[').trim_end_matches(']')).ok()?;
    Some(addr.to_canonical())
}

/// An IPv4 or IPv6 network in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`; a bare address
/// is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    addr: IpAddr,
    prefix: u8,
}

impl Network {
    /// Whether `addr` is inside this network. Loopback is one address in both families:
    /// `::1` is inside `127.0.0.0/8` and `127.0.0.1` inside `::1/128`.
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = match (self.addr, addr.to_canonical()) {
            (IpAddr::V4(_), IpAddr::V6(a)) if a.is_loopback() => IpAddr::from([127, 0, 0, 1]),
            (IpAddr::V6(_), IpAddr::V4(a)) if a.is_loopback() => {
                IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])
            }
            (_, a) => a,
        };
        match (self.addr, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Network {
    type Err = &'static str;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = IpAddr::from_str(addr)
            .map_err(|_| "is not an IP address or CIDR network")?
            .to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or("has a bad prefix length")?,
        };
        Ok(Self { addr, prefix })
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str) -> UserName {
        UserName::parse(name).unwrap()
    }

    fn remote(_: IpAddr) -> bool {
        false
    }

    fn exempt(
        rules: &Exemptions,
        rhost: Option<&str>,
        groups_of: impl Fn(&UserName) -> Option<Vec<String>>,
    ) -> Option<String> {
        rules
            .check(&user("alice"), rhost, groups_of, remote)
            .exempt
            .map(|e| e.to_string())
    }

    fn groups(list: &[&str]) -> impl Fn(&UserName) -> Option<Vec<String>> {
        let list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        move |_| Some(list.clone())
    }

    #[test]
    fn networks_match_addresses_never_host_names() {
        let rules = Exemptions {
            exempt_networks: vec![
                "10.0.0.0/8".parse().unwrap(),
                "2001:db8::/32".parse().unwrap(),
            ],
            ..Default::default()
        };
        for rhost in [
            "10.1.2.3",
            "::ffff:10.9.9.9",
            "2001:db8::1",
            "[2001:db8::2]",
        ] {
            assert!(
                exempt(&rules, Some(rhost), groups(&[])).is_some(),
                "{rhost}"
            );
        }
        for rhost in [
            "11.0.0.1",
            "2001:db9::1",
            "10.example.com",
            "",
            "localhost",
            "fe80::1%lo",
        ] {
            assert!(
                exempt(&rules, Some(rhost), groups(&[])).is_none(),
                "{rhost}"
            );
        }
        assert!(exempt(&rules, None, groups(&[])).is_none());
    }

    #[test]
    fn loopback_and_own_addresses_are_never_exempt_by_network_in_either_family() {
        let rules = Exemptions {
            exempt_networks: vec![
                "127.0.0.0/8".parse().unwrap(),
                "10.0.0.0/8".parse().unwrap(),
            ],
            ..Default::default()
        };
        // The rule matches loopback in both families and mapped forms...
        for a in ["127.0.0.1", "::1", "::ffff:127.0.0.1", "127.8.9.10"] {
            let addr: IpAddr = a.parse().unwrap();
            assert!(rules.exempt_networks[0].contains(addr), "{a}");
        }
        assert!(
            "::1/128"
                .parse::<Network>()
                .unwrap()
                .contains("127.0.0.1".parse().unwrap())
        );
        // ...but is never applied to them, and says so.
        for rhost in ["127.0.0.1", "::1", "::ffff:127.0.0.1", "[::1]"] {
            let v = rules.check(&user("alice"), Some(rhost), groups(&[]), remote);
            assert_eq!(v.exempt, None, "{rhost}");
            assert!(v.refused_local.is_some(), "{rhost}");
        }
        // The host's own address on another interface: same.
        let own: IpAddr = "10.0.0.5".parse().unwrap();
        let v = rules.check(&user("alice"), Some("10.0.0.5"), groups(&[]), |a| a == own);
        assert_eq!((v.exempt, v.refused_local.map(|r| r.0)), (None, Some(own)));
        assert!(exempt(&rules, Some("10.0.0.6"), groups(&[])).is_some());
        // A group exemption still applies from loopback: it does not depend on the address.
        let both = Exemptions {
            exempt_groups: vec!["robots".into()],
            ..rules.clone()
        };
        assert_eq!(
            exempt(&both, Some("127.0.0.1"), groups(&["robots"])).as_deref(),
            Some("member of exempt group robots")
        );
        assert_eq!(
            rules.local_networks(&[own]),
            vec![rules.exempt_networks[0], rules.exempt_networks[1]]
        );
        assert_eq!(rules.local_networks(&[]), vec![rules.exempt_networks[0]]);
    }

    #[test]
    fn cidr_parsing_is_strict() {
        assert_eq!(
            "192.0.2.7".parse::<Network>().unwrap().to_string(),
            "192.0.2.7/32"
        );
        assert!(
            "0.0.0.0/0"
                .parse::<Network>()
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        for bad in [
            "10.0.0.0/33",
            "10.0.0/8",
            "host.example",
            "::/129",
            "10.0.0.0/-1",
            "",
        ] {
            assert!(bad.parse::<Network>().is_err(), "{bad}");
        }
    }

    #[test]
    fn groups_exempt_or_require() {
        let by_group = Exemptions {
            exempt_groups: vec!["robots".into()],
            ..Default::default()
        };
        assert!(exempt(&by_group, None, groups(&["staff", "robots"])).is_some());
        assert!(exempt(&by_group, None, groups(&["staff"])).is_none());
        let require = Exemptions {
            require_groups: vec!["admins".into()],
            ..Default::default()
        };
        assert!(exempt(&require, None, groups(&["admins"])).is_none());
        assert_eq!(
            exempt(&require, None, groups(&["staff"])).as_deref(),
            Some("not in require_groups")
        );
        // Unknown account or unreadable groups: never exempt.
        assert!(exempt(&require, None, |_| None).is_none());
        assert!(exempt(&by_group, None, |_| None).is_none());
    }

    #[test]
    fn own_addresses_include_loopback() {
        assert!(own_addresses().iter().any(IpAddr::is_loopback));
    }

    #[test]
    fn nss_knows_root() {
        let groups = nss_groups(&user("root")).unwrap();
        assert!(groups.contains(&"root".to_string()), "{groups:?}");
        assert!(nss_groups(&user("no-such-user-ecs")).is_none());
    }
}
