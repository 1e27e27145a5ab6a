//! `completions` and `man`: generated from the clap definitions the tool itself parses with,
//! and (for pam_ecs_mfa.8) from the argument and config tables the module parses with.

use std::path::PathBuf;

use clap::CommandFactory;
use pam_ecs_mfa::decision::Reason;
use pam_ecs_mfa::policy::{CONFIG_KEYS, MODULE_ARGUMENTS};

use crate::{Cli, Exit, Failure, exit_status_help};

#[derive(clap::Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(clap::Args)]
pub struct ManArgs {
    /// A man directory (e.g. /usr/local/share/man): writes DIR/man1/mfa-enroll.1 and
    /// DIR/man8/pam_ecs_mfa.8, each page in its own section's directory.
    #[arg(long, value_name = "DIR", default_value = ".")]
    out: PathBuf,
}

pub fn completions(args: CompletionsArgs) -> Result<(), Failure> {
    let mut cmd = Cli::command();
    // Into a buffer first: clap_complete panics on a write error (a closed pipe).
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "mfa-enroll", &mut script);
    out!("{}", String::from_utf8_lossy(&script));
    Ok(())
}

pub fn man(args: ManArgs) -> Result<(), Failure> {
    let fail =
        |e: std::io::Error| Failure::new(Exit::Failure, format!("{}: {e}", args.out.display()));
    let (man1, man8) = (args.out.join("man1"), args.out.join("man8"));
    std::fs::create_dir_all(&man1).map_err(fail)?;
    std::fs::create_dir_all(&man8).map_err(fail)?;
    let mut page = Vec::new();
    let cmd = Cli::command();
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(&mut page).map_err(fail)?;
    man.render_name_section(&mut page).map_err(fail)?;
    man.render_synopsis_section(&mut page).map_err(fail)?;
    man.render_description_section(&mut page).map_err(fail)?;
    man.render_options_section(&mut page).map_err(fail)?;
    // clap_mangen's own subcommand section points at mfa-enroll-SUBCOMMAND(1) pages that do
    // not exist: list the subcommands here, their options follow in one section each.
    page.extend_from_slice(b".SH SUBCOMMANDS\n");
    for sub in cmd.get_subcommands() {
        let about = sub.get_about().map(ToString::to_string).unwrap_or_default();
        page.extend_from_slice(
            format!(".TP\n\\fB{}\\fR\n{}\n", sub.get_name(), roff_escape(&about)).as_bytes(),
        );
    }
    page.extend_from_slice(b".SH \"EXIT STATUS\"\n");
    page.extend_from_slice(roff_escape(&exit_status_help()).as_bytes());
    page.extend_from_slice(b"\n.SH FILES\n/var/lib/ecs-mfa/users/USER.toml, /run/ecs-mfa/USER.state, /etc/ecs-mfa/config.toml\n.SH \"SEE ALSO\"\npam_ecs_mfa(8)\n");
    // Each subcommand's own options, as `mfa-enroll SUBCOMMAND --help` shows them.
    for sub in cmd.get_subcommands() {
        page.extend_from_slice(
            format!(".SH \"MFA-ENROLL {}\"\n", sub.get_name().to_uppercase()).as_bytes(),
        );
        let help = sub
            .clone()
            .bin_name(format!("mfa-enroll {}", sub.get_name()))
            .render_long_help();
        page.extend_from_slice(b".nf\n");
        page.extend_from_slice(roff_escape(&help.to_string()).as_bytes());
        page.extend_from_slice(b"\n.fi\n");
    }
    std::fs::write(man1.join("mfa-enroll.1"), page).map_err(fail)?;
    std::fs::write(man8.join("pam_ecs_mfa.8"), module_page()).map_err(fail)?;
    Ok(())
}

fn module_page() -> String {
    let mut out = String::from(
        ".TH PAM_ECS_MFA 8 \"\" \"ecs-mfa\" \"Linux-PAM Manual\"\n\
         .SH NAME\npam_ecs_mfa \\- TOTP verification codes for SSH logins\n\
         .SH SYNOPSIS\n.B auth [success=done ignore=ignore default=die] pam_ecs_mfa.so\n[\\fIARGUMENTS\\fR]\n\
         .SH DESCRIPTION\nAsks for a verification code (TOTP, RFC 6238) and checks it against the \
         user's secret in the root-only enrollment store, with replay prevention, lockout and \
         single-use recovery codes. Users are enrolled with \\fBmfa-enroll\\fR(1). Every decision \
         is logged to syslog (authpriv) as one line: user, rhost, service, result, reason.\n\
         .SH ARGUMENTS\nAn unknown, repeated or malformed argument denies every login.\n",
    );
    for (name, help) in MODULE_ARGUMENTS {
        out.push_str(&format!(
            ".TP\n.B {}\n{}\n",
            roff_escape(name),
            roff_escape(help)
        ));
    }
    out.push_str(".SH \"CONFIGURATION FILE\"\n/etc/ecs-mfa/config.toml (optional; root-owned, not writable by group/other). Arguments override it. An unknown key or bad value denies every login.\n");
    for (key, help) in CONFIG_KEYS {
        out.push_str(&format!(
            ".TP\n.B {}\n{}\n",
            roff_escape(key),
            roff_escape(help)
        ));
    }
    out.push_str("The optional [fleet] table (after every key above) keeps enrollments and login state in an etcd cluster shared by every server; see /usr/share/doc/ecs-mfa/fleet.md.\n");
    for (key, help) in pam_ecs_mfa::fleet::FLEET_KEYS {
        out.push_str(&format!(
            ".TP\n.B fleet.{}\n{}\n",
            roff_escape(key),
            roff_escape(help)
        ));
    }
    out.push_str(
        ".SH \"RETURN VALUES\"\n.TP\nPAM_SUCCESS\nA valid, fresh code or an unused recovery code.\n\
         .TP\nPAM_IGNORE\nThe user has no enrollment and nullok is set.\n\
         .TP\nPAM_AUTH_ERR\nEverything else: wrong or replayed code, lockout, unknown user, unsafe \
         or invalid files, bad configuration, internal errors.\n\
         .SH FILES\n/var/lib/ecs-mfa/users/USER.toml (0600 root), /run/ecs-mfa/USER.state\n",
    );
    out.push_str(".SH \"AUDIT LOG\"\nOne line per decision: user= rhost= service= result= reason= and, where they apply, skew= failures= locked_for= remaining= detail=. The reasons:\n");
    for reason in Reason::ALL {
        out.push_str(&format!(
            ".TP\n.B {}\n{}\n",
            reason.as_str(),
            roff_escape(reason.meaning())
        ));
    }
    out.push_str(".SH \"SEE ALSO\"\nmfa-enroll(1), pam(8), sshd_config(5)\n");
    out
}

fn roff_escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .lines()
        .map(|l| {
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
