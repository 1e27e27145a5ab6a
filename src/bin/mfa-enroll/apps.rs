//! What common authenticator apps do with non-default TOTP parameters (docs/authenticator-apps.md
//! has the same table with its sources; a test keeps them in step). Used to warn before an
//! enrollment that most phones would get wrong.

use pam_ecs_mfa::totp::{Algorithm, TotpParams};

/// Whether an app honours a parameter, as far as a source says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Support {
    Yes,
    No,
    Unknown,
}

/// One row of the table: SHA256/SHA512, 8 digits, 60 s.
pub struct App {
    pub name: &'static str,
    pub sha2: Support,
    pub digits8: Support,
    pub period60: Support,
}

use Support::{No, Unknown, Yes};

/// The table of docs/authenticator-apps.md.
pub const APPS: [App; 9] = [
    App {
        name: "Google Authenticator (Android)",
        sha2: No,
        digits8: No,
        period60: Unknown,
    },
    App {
        name: "Google Authenticator (iOS)",
        sha2: Yes,
        digits8: Yes,
        period60: Unknown,
    },
    App {
        name: "Microsoft Authenticator (Android, iOS)",
        sha2: No,
        digits8: No,
        period60: Unknown,
    },
    App {
        name: "Authy (Android, iOS)",
        sha2: No,
        digits8: Yes,
        period60: Unknown,
    },
    App {
        name: "FreeOTP (Android)",
        sha2: Yes,
        digits8: Yes,
        period60: Yes,
    },
    App {
        name: "Aegis (Android)",
        sha2: Yes,
        digits8: Yes,
        period60: Unknown,
    },
    App {
        name: "2FAS (Android, iOS)",
        sha2: Yes,
        digits8: Yes,
        period60: Unknown,
    },
    App {
        name: "Bitwarden",
        sha2: Yes,
        digits8: Yes,
        period60: Yes,
    },
    App {
        name: "1Password",
        sha2: Unknown,
        digits8: Unknown,
        period60: Unknown,
    },
];

/// For parameters other than SHA1/6/30: the apps known to honour all of them, and those known
/// to get at least one wrong. `None` for the defaults, which every app supports.
pub fn support_for(params: TotpParams) -> Option<(Vec<&'static str>, Vec<&'static str>)> {
    let wanted = |app: &App| {
        let mut all = Vec::new();
        if params.algorithm() != Algorithm::Sha1 {
            all.push(app.sha2);
        }
        if params.digits() != 6 {
            all.push(app.digits8);
        }
        if params.period() != 30 {
            all.push(app.period60);
        }
        all
    };
    let nonstandard = !wanted(&APPS[0]).is_empty();
    nonstandard.then(|| {
        let honour = APPS
            .iter()
            .filter(|a| wanted(a).iter().all(|s| *s == Yes))
            .map(|a| a.name)
            .collect();
        let ignore = APPS
            .iter()
            .filter(|a| wanted(a).contains(&No))
            .map(|a| a.name)
            .collect();
        (honour, ignore)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_the_one_in_the_docs() {
        let doc = include_str!("../../../docs/authenticator-apps.md");
        let word = |s: Support| match s {
            Yes => "yes",
            No => "no",
            Unknown => "unknown",
        };
        for app in &APPS {
            let row = doc
                .lines()
                .find(|l| l.starts_with(&format!("| {} |", app.name)))
                .unwrap_or_else(|| panic!("{} missing from docs/authenticator-apps.md", app.name));
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            for (cell, s) in cells[2..5]
                .iter()
                .zip([app.sha2, app.digits8, app.period60])
            {
                assert!(cell.starts_with(word(s)), "{}: '{cell}' vs {s:?}", app.name);
            }
        }
    }

    #[test]
    fn defaults_need_no_warning_and_others_name_the_apps() {
        assert!(support_for(TotpParams::default()).is_none());
        let p = TotpParams::new(Algorithm::Sha256, 8, 30).unwrap();
        let (honour, ignore) = support_for(p).unwrap();
        assert!(honour.contains(&"FreeOTP (Android)") && honour.contains(&"Aegis (Android)"));
        assert!(ignore.contains(&"Google Authenticator (Android)"));
        assert!(!honour.contains(&"1Password"));
        let (honour, _) = support_for(TotpParams::new(Algorithm::Sha1, 6, 60).unwrap()).unwrap();
        assert_eq!(honour, vec!["FreeOTP (Android)", "Bitwarden"]);
    }
}
