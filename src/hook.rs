//! What `pam_sm_authenticate` does, behind a small trait that the real PAM handle implements
//! (in [`crate::pam`], the only unsafe module) and tests implement with a script: module
//! arguments, the user name and its failures, the PAM items and environment, a missing
//! conversation, the debug line and the audit line. The PAM return code is chosen from the
//! returned [`Decision`] in one place, `pam::pam_code`.
#![forbid(unsafe_code)]

use crate::audit::{self, Context, Severity};
use crate::decision::{Decision, Outcome, PendingGrace, Reason};
use crate::login::{self, Attempt, Conversation, Finished, Login};
use crate::policy::{PassMode, Policy};
use crate::ssh_auth_info::SshAuthInfo;
use zeroize::Zeroizing;

/// Where OpenSSH (>= 7.8) lists the methods that completed before PAM ran.
const SSH_AUTH_INFO: &str = "SSH_AUTH_INFO_0";

/// What the hook needs from the PAM application (kanidm's `PamHandler` is the model).
pub trait PamHandler {
    /// `pam_get_user`; `Err` carries the PAM code (a name that is not UTF-8 is an error too).
    fn user(&mut self) -> Result<String, i32>;
    /// `PAM_RHOST`.
    fn rhost(&self) -> Option<String>;
    /// `PAM_SERVICE`.
    fn service(&self) -> Option<String>;
    /// `PAM_RUSER` (who asked: `su` sets the invoking user).
    fn ruser(&self) -> Option<String>;
    /// A variable of the PAM environment (`SSH_AUTH_INFO_0`).
    fn env(&self, name: &str) -> Option<String>;
    /// `PAM_AUTHTOK`, as an earlier module left it.
    fn authtok(&self) -> Option<Zeroizing<Vec<u8>>>;
    /// Sets `PAM_AUTHTOK` for the modules after this one (`forward_pass`); `Err`: PAM's code.
    fn set_authtok(&mut self, token: &[u8]) -> Result<(), i32>;
    /// Runs `f` with the application's conversation, or `None` when it has none.
    fn with_conversation<R>(&self, f: impl FnOnce(Option<&mut dyn Conversation>) -> R) -> R;
    /// One syslog line (authpriv, through `pam_syslog`). A failure never changes the result.
    fn log(&self, severity: Severity, message: &str);
    /// How a fleet login reaches etcd: the real module loads `libecs_mfa_etcd.so`
    /// (`pam::etcd_helper`); no default, so that the module never links the client itself.
    fn etcd_connector(&self) -> crate::fleet::transport::Connector;
    /// Keeps a pending grace grant (for the account named) in the PAM handle until
    /// `pam_sm_setcred` (`pam_set_data`); `None` forgets an earlier attempt's.
    fn keep_for_setcred(&mut self, pending: Option<Kept>);
    /// Takes what [`PamHandler::keep_for_setcred`] kept in this handle, if anything.
    fn take_kept_for_setcred(&mut self) -> Option<Kept>;
}

/// What `pam_sm_authenticate` leaves for `pam_sm_setcred`: the account, its pending grace grant
/// and when the authentication began (see [`crate::login::Backend::commit_grace`]).
pub type Kept = (crate::state::Owner, PendingGrace, std::time::Instant);

/// The hook: the module arguments (already text; `Err` when one is not UTF-8), then the user,
/// the items and the conversation, one audit line, the decision.
pub fn authenticate(pam: &mut impl PamHandler, args: Result<Vec<String>, String>) -> Decision {
    let started = std::time::Instant::now();
    let mut ctx = Context {
        user: None,
        rhost: pam.rhost(),
        service: pam.service(),
        format: crate::audit::Format::default(),
    };
    let policy = match args.and_then(|args| {
        Policy::from_module_args(args.iter().map(String::as_str)).map_err(|e| e.to_string())
    }) {
        Ok(policy) => policy,
        Err(why) => {
            return finish(
                pam,
                &ctx,
                Decision::deny(Reason::BadConfig).with_detail(why),
            );
        }
    };
    ctx.format = policy.audit_format;
    if policy.test_panic {
        panic!("test_panic: a panic on purpose (module argument)");
    }
    let info = pam.env(SSH_AUTH_INFO);
    // Parsed once: the first factor, grace, enrollment at login and the audit line use it.
    let ssh = info.as_deref().map(SshAuthInfo::parse);
    let user = match pam.user() {
        Ok(user) => user,
        Err(code) => {
            let why = format!("cannot read the user name (PAM code {code}; not UTF-8?)");
            let decision = pam.with_conversation(|conv| match conv {
                Some(conv) => login::deny_unreadable_user(conv, &policy, ssh.as_ref(), why),
                None => Decision::deny(Reason::BadUser).with_detail(why),
            });
            return finish(pam, &ctx, decision);
        }
    };
    ctx.user = Some(user.clone());
    if policy.debug {
        pam.log(Severity::Info, &debug_line(&policy, info.as_deref()));
    }
    let earlier = pam.authtok();
    let authtok = match policy.pass {
        PassMode::UseFirst | PassMode::TryFirst => earlier.as_deref().map(Vec::as_slice),
        PassMode::Prompt | PassMode::Forward => None,
    };
    let ruser = pam.ruser();
    let attempt = Attempt {
        user: &user,
        rhost: ctx.rhost.as_deref(),
        service: ctx.service.as_deref(),
        ruser: ruser.as_deref(),
        ssh_auth_info: ssh.as_ref(),
        authtok,
        earlier_password: earlier.is_some(),
    };
    // The one place the module chooses its storage (files or the fleet).
    let mut backend = login::choose_backend(&policy, pam.etcd_connector());
    let Finished {
        mut decision,
        forward,
    } = pam.with_conversation(|conv| match conv {
        Some(conv) => Login::new(conv, &policy, attempt, &crate::clock::now).run(&mut *backend),
        None => Finished {
            decision: Decision::deny(Reason::NoCode)
                .with_detail("the application has no conversation"),
            forward: None,
        },
    });
    // A certificate login: the audit line names the certificate (key id, serial, principals,
    // CA) besides the key it certifies.
    if let Some(note) = ssh.as_ref().and_then(SshAuthInfo::certificate_note) {
        decision.detail = Some(match decision.detail.take() {
            Some(detail) => format!("{detail}; {note}"),
            None => note,
        });
    }
    // forward_pass: the password part goes to the next module whatever the decision, so that
    // it is checked either way and the client cannot tell which part was wrong.
    if let Some(password) = forward
        && let Err(code) = pam.set_authtok(&password)
    {
        decision = Decision::deny(Reason::Internal).with_detail(format!(
            "forward_pass: PAM_AUTHTOK could not be set (PAM code {code})"
        ));
    }
    let pending = match (&decision.grace_pending, decision.outcome) {
        (Some(p), Outcome::Success) => {
            grace_owner(decision.account().unwrap_or(&user), decision.person())
                .map(|owner| (owner, **p, started))
        }
        _ => None,
    };
    pam.keep_for_setcred(pending);
    finish(pam, &ctx, decision)
}

/// Whose state a grace grant goes to: the account, or the person's token on it.
fn grace_owner(account: &str, person: Option<&str>) -> Option<crate::state::Owner> {
    let user = crate::user_name::UserName::parse(account).ok()?;
    let person = match person {
        Some(p) => Some(crate::user_name::Person::parse(p).ok()?),
        None => None,
    };
    Some(crate::state::Owner::new(&user, person.as_ref()))
}

/// `pam_sm_setcred`: applications call it only after the whole authentication succeeded, so
/// this is where a grace period of a password stack starts (see `crate::login::grace`). It never
/// fails the application: without the grant the next login simply asks for a code.
pub fn setcred(pam: &mut impl PamHandler, args: Result<Vec<String>, String>, establish: bool) {
    let Some((owner, pending, started)) = pam.take_kept_for_setcred() else {
        return;
    };
    if !establish {
        return;
    }
    let Ok(policy) = args.and_then(|args| {
        Policy::from_module_args(args.iter().map(String::as_str)).map_err(|e| e.to_string())
    }) else {
        return;
    };
    let user = owner.user().clone();
    let mut backend = login::choose_backend(&policy, pam.etcd_connector());
    let now = crate::clock::unix_now();
    if let Err(why) = backend.commit_grace(&owner, pending, now, started) {
        pam.log(
            Severity::Notice,
            &format!(
                "user={} grace not started after the stack succeeded: {}",
                crate::text::ascii_printable(user.as_str(), 64),
                crate::text::ascii_printable(&why, 300)
            ),
        );
    }
}

/// The one line `debug` adds (never codes or secrets; only whether sshd's auth info is there).
fn debug_line(policy: &Policy, ssh_auth_info: Option<&str>) -> String {
    format!(
        "debug: store={} state={} config={} nullok={} window={} first_factor={} ssh_auth_info={} backend={}",
        policy.store_dir.display(),
        policy.state_dir.display(),
        policy.config_path.display(),
        policy.nullok,
        policy.window,
        policy.first_factor.as_str(),
        match ssh_auth_info {
            None => "absent",
            Some("") => "empty",
            Some(_) => "present",
        },
        match &policy.fleet {
            None => "files".to_string(),
            Some(f) => format!(
                "etcd({} endpoints, timeout_ms={}, on_unavailable={})",
                f.endpoints.len(),
                f.timeout.as_millis(),
                f.on_unavailable.as_str()
            ),
        }
    )
}

fn finish(pam: &impl PamHandler, ctx: &Context, decision: Decision) -> Decision {
    pam.log(decision.severity(), &audit::line(ctx, &decision));
    decision
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;
    use crate::decision::Outcome;
    use crate::login::ConversationError;
    use crate::store::record::Origin;
    use crate::store::{SaveMode, Store, UserRecord};
    use crate::test_util::Scratch;
    use crate::totp::{SecretKey, TotpParams};
    use crate::user_name::UserName;
    use zeroize::Zeroizing;

    /// A PAM application played from a script. On drop it asserts that every scripted answer
    /// was asked for: a test cannot pass while the hook skipped a prompt it should have shown.
    #[derive(Default)]
    struct ScriptedPam {
        user: Option<Result<String, i32>>,
        rhost: Option<String>,
        env: Vec<(&'static str, String)>,
        no_conversation: bool,
        answers: RefCell<Vec<String>>,
        prompts: RefCell<Vec<String>>,
        logs: RefCell<Vec<(Severity, String)>>,
        authtok: Option<String>,
        authtok_set: Vec<Vec<u8>>,
        kept: Option<Kept>,
    }

    impl ScriptedPam {
        fn user(name: &str) -> Self {
            let mut pam = Self::default();
            pam.user = Some(Ok(name.to_string()));
            pam.rhost = Some("192.0.2.7".into());
            pam
        }

        fn unreadable(code: i32) -> Self {
            let mut pam = Self::user("x");
            pam.user = Some(Err(code));
            pam.rhost = None;
            pam
        }

        fn with_env(mut self, name: &'static str, value: &str) -> Self {
            self.env.push((name, value.to_string()));
            self
        }

        fn without_conversation(mut self) -> Self {
            self.no_conversation = true;
            self
        }

        fn answering(mut self, answers: &[&str]) -> Self {
            self.answers = RefCell::new(answers.iter().rev().map(|a| a.to_string()).collect());
            self
        }

        fn audit(&self) -> String {
            let logs = self.logs.borrow();
            let audit: Vec<&String> = logs
                .iter()
                .map(|(_, l)| l)
                .filter(|l| l.contains(" result="))
                .collect();
            assert_eq!(audit.len(), 1, "one audit line: {logs:?}");
            audit[0].clone()
        }
    }

    impl Drop for ScriptedPam {
        fn drop(&mut self) {
            if !std::thread::panicking() {
                assert!(
                    self.answers.borrow().is_empty(),
                    "scripted answers never asked for: {:?}",
                    self.answers.borrow()
                );
            }
        }
    }

    struct ScriptConv<'a>(&'a ScriptedPam);

    impl Conversation for ScriptConv<'_> {
        fn ask(
            &mut self,
            prompt: &str,
            echo: bool,
        ) -> Result<Zeroizing<Vec<u8>>, ConversationError> {
            let shown = if echo { "(echo) " } else { "" };
            self.0.prompts.borrow_mut().push(format!("{shown}{prompt}"));
            match self.0.answers.borrow_mut().pop() {
                Some(a) => Ok(Zeroizing::new(a.into_bytes())),
                None => Err(ConversationError("no scripted answer".into())),
            }
        }

        fn ask_hidden(&mut self, prompt: &str) -> Result<Zeroizing<Vec<u8>>, ConversationError> {
            self.0.prompts.borrow_mut().push(prompt.to_string());
            match self.0.answers.borrow_mut().pop() {
                Some(a) => Ok(Zeroizing::new(a.into_bytes())),
                None => Err(ConversationError("no scripted answer".into())),
            }
        }

        fn info(&mut self, _: &str) -> Result<(), ConversationError> {
            Ok(())
        }
    }

    impl PamHandler for ScriptedPam {
        fn user(&mut self) -> Result<String, i32> {
            self.user.clone().expect("the test scripted no user")
        }
        fn rhost(&self) -> Option<String> {
            self.rhost.clone()
        }
        fn service(&self) -> Option<String> {
            Some("sshd".into())
        }
        fn env(&self, name: &str) -> Option<String> {
            self.env
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.clone())
        }
        fn authtok(&self) -> Option<Zeroizing<Vec<u8>>> {
            self.authtok.clone().map(|t| Zeroizing::new(t.into_bytes()))
        }
        fn set_authtok(&mut self, token: &[u8]) -> Result<(), i32> {
            self.authtok_set.push(token.to_vec());
            Ok(())
        }
        fn with_conversation<R>(&self, f: impl FnOnce(Option<&mut dyn Conversation>) -> R) -> R {
            if self.no_conversation {
                f(None)
            } else {
                f(Some(&mut ScriptConv(self)))
            }
        }
        fn log(&self, severity: Severity, message: &str) {
            self.logs.borrow_mut().push((severity, message.to_string()));
        }

        fn etcd_connector(&self) -> crate::fleet::transport::Connector {
            crate::fleet::transport::native
        }

        fn ruser(&self) -> Option<String> {
            None
        }

        fn keep_for_setcred(&mut self, pending: Option<Kept>) {
            self.kept = pending;
        }

        fn take_kept_for_setcred(&mut self) -> Option<Kept> {
            self.kept.take()
        }
    }

    /// A store with alice enrolled (RFC 6238 test secret) and module arguments pointing at it.
    fn setup(extra: &[&str]) -> (Scratch, Vec<String>, SecretKey) {
        let s = Scratch::new("hook");
        let secret = SecretKey::from_bytes(b"12345678901234567890".to_vec()).unwrap();
        Store::new(s.0.join("users"))
            .save(
                &UserRecord {
                    user: UserName::parse("root").unwrap(),
                    secret: secret.clone(),
                    params: TotpParams::default(),
                    created: 0,
                    issuer: "t".into(),
                    recovery_codes: vec![],
                    origin: Origin::Admin,
                    hotp: None,
                    generation: 0,
                    person: None,
                    keys: Vec::new(),
                },
                SaveMode::CreateNew,
            )
            .unwrap();
        let mut args = vec![
            format!("store={}", s.0.join("users").display()),
            format!("state={}", s.0.join("run").display()),
            format!("config={}", s.0.join("none.toml").display()),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        (s, args, secret)
    }

    fn code_now(secret: &SecretKey) -> String {
        let now = crate::clock::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        crate::totp::code_at(secret, TotpParams::default(), now).to_string()
    }

    #[test]
    fn a_correct_code_succeeds_and_the_audit_line_has_the_items() {
        let (_s, args, secret) = setup(&[]);
        let mut pam = ScriptedPam::user("root").answering(&[&code_now(&secret)]);
        let d = authenticate(&mut pam, Ok(args));
        assert_eq!((d.outcome, d.reason), (Outcome::Success, Reason::Ok));
        assert_eq!(
            *pam.prompts.borrow(),
            vec!["Verification code: ".to_string()]
        );
        assert!(
            pam.audit()
                .starts_with("user=root rhost=192.0.2.7 service=sshd result=success"),
            "{}",
            pam.audit()
        );
    }

    #[test]
    fn echo_code_asks_with_echo_on() {
        let (_s, args, secret) = setup(&["echo_code"]);
        let mut pam = ScriptedPam::user("root").answering(&[&code_now(&secret)]);
        let d = authenticate(&mut pam, Ok(args));
        assert_eq!(d.reason, Reason::Ok);
        assert_eq!(
            *pam.prompts.borrow(),
            vec!["(echo) Verification code: ".to_string()]
        );
    }

    #[test]
    fn forward_pass_asks_once_and_hands_the_password_on_whatever_the_code() {
        let (_s, args, secret) = setup(&["forward_pass"]);
        let code = code_now(&secret);
        let mut pam = ScriptedPam::user("root").answering(&[&format!("s3cret pw{code}")]);
        let d = authenticate(&mut pam, Ok(args.clone()));
        assert_eq!(d.reason, Reason::Ok);
        assert_eq!(
            *pam.prompts.borrow(),
            vec!["Password & verification code: ".to_string()]
        );
        assert_eq!(pam.authtok_set, vec![b"s3cret pw".to_vec()]);
        assert!(!pam.audit().contains("s3cret"), "no password in the log");
        // A wrong (here: replayed) code: the password still goes on, so the next module checks
        // it and the client cannot tell which part was wrong.
        let mut pam = ScriptedPam::user("root").answering(&[&format!("other{code}")]);
        let d = authenticate(&mut pam, Ok(args.clone()));
        assert_eq!(d.reason, Reason::Replay);
        assert_eq!(pam.authtok_set, vec![b"other".to_vec()]);
        // No code at the end at all: the whole answer is the password, the code is wrong.
        let mut pam = ScriptedPam::user("root").answering(&["just-a-password"]);
        let d = authenticate(&mut pam, Ok(args));
        assert_eq!(d.reason, Reason::BadCode);
        assert_eq!(pam.authtok_set, vec![b"just-a-password".to_vec()]);
    }

    #[test]
    fn use_first_pass_takes_the_code_from_authtok_and_try_first_pass_falls_back_to_asking() {
        let (_s, args, secret) = setup(&["use_first_pass"]);
        let mut pam = ScriptedPam::user("root");
        pam.authtok = Some(code_now(&secret));
        let d = authenticate(&mut pam, Ok(args.clone()));
        assert_eq!(d.reason, Reason::Ok);
        assert!(pam.prompts.borrow().is_empty(), "never asks");
        let mut pam = ScriptedPam::user("root");
        let d = authenticate(&mut pam, Ok(args));
        assert_eq!(d.reason, Reason::NoCode);
        assert!(
            pam.audit().contains("use_first_pass: no PAM_AUTHTOK"),
            "{}",
            pam.audit()
        );

        let (_s, args, secret) = setup(&["try_first_pass"]);
        let mut pam = ScriptedPam::user("root").answering(&[&code_now(&secret)]);
        pam.authtok = Some("a unix password".into());
        let d = authenticate(&mut pam, Ok(args));
        assert_eq!(d.reason, Reason::Ok, "not code-shaped: asked");
        assert_eq!(pam.prompts.borrow().len(), 1);
        assert!(pam.authtok_set.is_empty());
    }

    #[test]
    fn pass_modes_exclude_each_other() {
        let (_s, args, _) = setup(&["forward_pass", "use_first_pass"]);
        let mut pam = ScriptedPam::user("root");
        assert_eq!(authenticate(&mut pam, Ok(args)).reason, Reason::BadConfig);
        assert!(
            pam.audit().contains("exclude each other"),
            "{}",
            pam.audit()
        );
    }

    #[test]
    fn bad_arguments_deny_without_a_prompt_and_say_why() {
        let (_s, mut args, _) = setup(&[]);
        args.push("nulok".into());
        let mut pam = ScriptedPam::user("root");
        let d = authenticate(&mut pam, Ok(args));
        assert_eq!(d.reason, Reason::BadConfig);
        assert!(pam.prompts.borrow().is_empty());
        assert!(pam.audit().contains("unknown module argument 'nulok'"));
        let mut pam = ScriptedPam::user("root");
        let d = authenticate(&mut pam, Err("a module argument is not UTF-8".into()));
        assert_eq!(d.reason, Reason::BadConfig);
        assert!(pam.audit().contains("not UTF-8"));
    }

    #[test]
    fn an_unreadable_user_name_is_prompted_and_denied() {
        let (_s, args, _) = setup(&[]);
        let mut pam = ScriptedPam::unreadable(4).answering(&["123456"]);
        let d = authenticate(&mut pam, Ok(args));
        assert_eq!(d.reason, Reason::BadUser);
        assert_eq!(pam.prompts.borrow().len(), 1);
        assert!(pam.audit().starts_with("user=- "), "{}", pam.audit());
    }

    #[test]
    fn no_conversation_is_a_denial_and_first_factor_is_read_from_the_environment() {
        let (_s, args, secret) = setup(&["first_factor=publickey", "debug"]);
        let mut pam = ScriptedPam::user("root").without_conversation();
        let d = authenticate(&mut pam, Ok(args.clone()));
        assert_eq!(d.reason, Reason::NoCode);
        let debug = pam.logs.borrow()[0].1.clone();
        assert!(
            debug.contains("first_factor=publickey ssh_auth_info=absent"),
            "{debug}"
        );
        // With a conversation but no key in the environment: refused before any prompt.
        let mut pam = ScriptedPam::user("root");
        let d = authenticate(&mut pam, Ok(args.clone()));
        assert_eq!(d.reason, Reason::NoFirstFactor);
        assert!(pam.prompts.borrow().is_empty());
        let key = "publickey ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRvhrYFI8miX35xWYJk1Iz3C5Jmldf0HlXJgTIO3nY3";
        let mut pam = ScriptedPam::user("root")
            .with_env(SSH_AUTH_INFO, key)
            .without_conversation();
        let d = authenticate(&mut pam, Ok(args.clone()));
        assert_eq!(d.reason, Reason::NoCode);
        let mut pam = ScriptedPam::user("root")
            .with_env(SSH_AUTH_INFO, key)
            .answering(&[&code_now(&secret)]);
        assert_eq!(authenticate(&mut pam, Ok(args)).reason, Reason::Ok);
        assert!(
            !pam.logs
                .borrow()
                .iter()
                .any(|(_, l)| l.contains(&code_now(&secret)))
        );
    }
}
