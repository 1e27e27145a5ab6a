//! Who does not need MFA: `exempt_networks`, `exempt_groups` and `require_groups`.
//!
//! An exempt login gets `PAM_IGNORE` without a prompt (`reason=exempt`), so the shipped stacks
//! (`[success=done ignore=ignore default=die]` followed by `pam_permit`) let it through with the
//! SSH key alone. Every uncertainty resolves to "MFA required": a host name never matches a
//! network (only a literal `PAM_RHOST` address does), an account that does not exist or whose
//! groups cannot be read is never exempt, and invalid settings are config errors that deny
//! every login.
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

impl Exemptions {
    /// Why `user` logging in from `rhost` is exempt, or `None` when MFA is required.
    /// `groups_of` returns the user's group names, `None` when the account does not exist or
    /// its groups cannot be read (then the user is never exempt).
    pub fn check(
        &self,
        user: &UserName,
        rhost: Option<&str>,
        groups_of: impl Fn(&UserName) -> Option<Vec<String>>,
    ) -> Option<String> {
        if let Some(addr) = rhost.and_then(parse_addr)
            && let Some(net) = self.exempt_networks.iter().find(|n| n.contains(addr))
        {
            return Some(format!("rhost in exempt_networks {net}"));
        }
        if self.exempt_groups.is_empty() && self.require_groups.is_empty() {
            return None;
        }
        let groups = groups_of(user)?;
        if let Some(g) = self.exempt_groups.iter().find(|g| groups.contains(g)) {
            return Some(format!("member of exempt group {g}"));
        }
        if !self.require_groups.is_empty()
            && !self.require_groups.iter().any(|g| groups.contains(g))
        {
            return Some("not in require_groups".to_string());
        }
        None
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

/// A literal address; `PAM_RHOST` may also be a host name, which never matches.
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
    /// Whether `addr` is inside this network.
    pub fn contains(&self, addr: IpAddr) -> bool {
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
        let alice = user("alice");
        for rhost in [
            "10.1.2.3",
            "::ffff:10.9.9.9",
            "2001:db8::1",
            "[2001:db8::2]",
        ] {
            assert!(
                rules.check(&alice, Some(rhost), groups(&[])).is_some(),
                "{rhost}"
            );
        }
        for rhost in ["11.0.0.1", "2001:db9::1", "10.example.com", "", "localhost"] {
            assert!(
                rules.check(&alice, Some(rhost), groups(&[])).is_none(),
                "{rhost}"
            );
        }
        assert!(rules.check(&alice, None, groups(&[])).is_none());
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
        let alice = user("alice");
        let exempt = Exemptions {
            exempt_groups: vec!["robots".into()],
            ..Default::default()
        };
        assert!(
            exempt
                .check(&alice, None, groups(&["staff", "robots"]))
                .is_some()
        );
        assert!(exempt.check(&alice, None, groups(&["staff"])).is_none());
        let require = Exemptions {
            require_groups: vec!["admins".into()],
            ..Default::default()
        };
        assert!(require.check(&alice, None, groups(&["admins"])).is_none());
        assert_eq!(
            require.check(&alice, None, groups(&["staff"])).as_deref(),
            Some("not in require_groups")
        );
        // Unknown account or unreadable groups: never exempt.
        assert!(require.check(&alice, None, |_| None).is_none());
        assert!(exempt.check(&alice, None, |_| None).is_none());
    }

    #[test]
    fn nss_knows_root() {
        let groups = nss_groups(&user("root")).unwrap();
        assert!(groups.contains(&"root".to_string()), "{groups:?}");
        assert!(nss_groups(&user("no-such-user-ecs")).is_none());
    }
}
