//! Verification: step 6's decision on the current record and the locked (or
//! compared-and-swapped) login state: generation check, clock anomalies, lockout, then a
//! recovery code, an HOTP code or a TOTP code, replay check, failure counting, and the
//! clock-drift hint. What a decision changes besides the login state goes through
//! [`Effects`], which each backend implements. Nothing in here does I/O or waits.
#![forbid(unsafe_code)]

use crate::decision::{Decision, Outcome, Reason};
use crate::policy::Policy;
use crate::recovery::RecoveryCode;
use crate::state::UserState;
use crate::store::UserRecord;
use crate::totp::{self, Verification};

/// What a decision changes besides the login state it is given. The decision is made on the
/// state only (files: `used_recovery` and `hotp` in the state file, saved by the login's one
/// state write; fleet: the fleet state, in the same compare-and-swap), so a full or read-only
/// store never refuses a login. Files then fold the change into the record as a best effort.
pub trait Effects {
    /// Uses up the recovery code with this hash (one of `record`'s) in `st`:
    /// `Ok(Some((remaining, note)))`, `Ok(None)` when it is already used (another login used
    /// it), `Err` with the denial when it cannot be done. `note`: for the audit line.
    fn use_recovery(
        &mut self,
        record: &UserRecord,
        st: &mut UserState,
        hash: &str,
    ) -> Result<Option<(usize, Option<String>)>, Decision>;
    /// The next HOTP counter of `record`'s token (where the last accepted code left it).
    fn hotp_next(&self, record: &UserRecord, st: &UserState) -> u64;
    /// Moves the HOTP counter forward to `next` (never back) in `st`, or says why not.
    /// `Ok(note)`: for the audit line.
    fn advance_hotp(
        &mut self,
        record: &UserRecord,
        st: &mut UserState,
        next: u64,
    ) -> Result<Option<String>, Decision>;
}

/// Codes beyond the HOTP look-ahead window that are still searched for a resynchronisation.
pub const HOTP_RESYNC_LIMIT: u64 = 1000;

/// The recovery code (or legacy 8-digit scratch code, for 6-digit tokens) an answer is shaped
/// like, if any.
pub fn recovery_code_in(answer: &[u8], digits: u8) -> Option<RecoveryCode> {
    RecoveryCode::parse(answer).or_else(|| {
        (digits == 6)
            .then(|| RecoveryCode::from_scratch_code(answer))
            .flatten()
    })
}

/// What Argon2 found for a recovery-shaped answer, before any lock: the hash of the record it
/// matched, if any.
pub struct RecoveryMatch(Option<String>);

/// The Argon2 part of a recovery-shaped answer, outside every lock: `None` for other answers.
/// It runs only when `st` (the user's state as read just before, without holding a lock across
/// this) shows no lockout, no clock problem and no rollback: other attempts cost no CPU (see
/// `recovery::CHECK_WALL`). Attempts racing in parallel before the first failure is recorded
/// each run it once; then the lockout stops them.
pub fn precheck_recovery(
    record: &UserRecord,
    policy: &Policy,
    answer: &[u8],
    now: u64,
    st: &UserState,
) -> Option<RecoveryMatch> {
    let code = recovery_code_in(answer, record.params.digits())?;
    let tolerance = record
        .params
        .period()
        .saturating_mul(u64::from(policy.window) + 1);
    let mut st = *st;
    st.clamp_lockout(now, policy.throttle.lockout_max_seconds);
    let hopeless = st.locked_for(now).is_some()
        || st.mark_ahead(now, tolerance).is_some()
        || st.see_generation(record.generation).is_err();
    if hopeless {
        return Some(RecoveryMatch(None));
    }
    Some(RecoveryMatch(
        code.find_in(&record.recovery_codes)
            .map(|i| record.recovery_codes[i].clone()),
    ))
}

/// After the decision, with no lock held: a recovery-shaped answer takes
/// [`crate::recovery::CHECK_WALL`] from `started`, whatever happened.
pub fn pace_answer(answer: &[u8], digits: u8, started: std::time::Instant) {
    if recovery_code_in(answer, digits).is_some() {
        crate::recovery::pace(started);
    }
}

/// Step 5's decision, on the current record and the locked (or compared-and-swapped) state.
///
/// `pre`: the Argon2 part of a recovery-shaped answer, done by [`precheck_recovery`] before the
/// lock (or the compare-and-swap) so that no lock is held while Argon2 runs or while a check
/// is paced; `None` computes it here (never for logins: see `Backend::settle`). Nothing in here
/// waits: the caller paces recovery-shaped answers after releasing the lock ([`pace_answer`]).
pub fn decide(
    record: &UserRecord,
    policy: &Policy,
    answer: &[u8],
    now: u64,
    st: &mut UserState,
    effects: &mut dyn Effects,
    pre: Option<&RecoveryMatch>,
) -> Decision {
    let params = record.params;
    let recovery = recovery_code_in(answer, params.digits());
    // Refusals before the check: the caller's pacing makes them take what a check takes.
    let refuse = |d: Decision| d;
    // An older record than one seen before: a replaced secret written back (issue 23.6).
    if let Err(seen) = st.see_generation(record.generation) {
        // Shared accounts: the commands must name the person (the account has several).
        let whom = match &record.person {
            Some(person) => format!("{} --person {person}", record.user),
            None => record.user.to_string(),
        };
        return refuse(Decision::deny(Reason::BadFile).with_detail(format!(
            "record generation {} is older than {seen} seen before: rolled back? (a restored \
             backup or an old value written back): mfa-enroll reset --user {whom} replaces it, \
             or mfa-enroll recovery --user {whom} keeps it (with new recovery codes)",
            record.generation
        )));
    }
    // Clock anomalies first: state written while the clock was ahead must neither lock the
    // user out for longer than policy allows nor pass for replays.
    st.clamp_lockout(now, policy.throttle.lockout_max_seconds);
    let tolerance = params.period().saturating_mul(u64::from(policy.window) + 1);
    st.clamp_mark(now, tolerance, policy.throttle.lockout_max_seconds);
    if let Some(ahead) = st.mark_ahead(now, tolerance) {
        return refuse(Decision::deny(Reason::StateInFuture).with_detail(format!(
            "the last accepted code is {ahead} s ahead of this server's clock (it was ahead, or \
             was set back): every code would be a replay until then; check the clock, then \
             mfa-enroll unlock --user {}",
            record.user
        )));
    }
    if let Some(left) = st.locked_for(now) {
        // Not verified and not counted: a locked-out user learns nothing, and an attacker
        // cannot extend the lockout by hammering it.
        let mut d = Decision::deny(Reason::Throttled);
        d.failures = Some(st.failures);
        d.locked_for = Some(left);
        return refuse(d);
    }
    if let Some(code) = recovery {
        return decide_recovery(record, &code, policy, now, st, effects, pre);
    }
    if record.hotp.is_some() {
        return decide_hotp(record, policy, answer, now, st, effects);
    }
    let verification = match totp::normalize_code(answer, params.digits()) {
        Some(code) => totp::verify(
            &record.secret,
            params,
            &code,
            now,
            policy.window,
            st.last_accepted,
        ),
        None => Verification::Rejected,
    };
    let mut decision = match verification {
        Verification::Accepted { step, skew } => {
            st.record_success(params.step_start(step));
            return Decision::success(skew);
        }
        Verification::Replayed { skew } => Decision {
            skew: Some(skew),
            ..Decision::deny(Reason::Replay)
        },
        Verification::Rejected => {
            let d = Decision::deny(Reason::BadCode);
            match drift_hint(record, answer, now, policy.window, st.failures) {
                Some(hint) => d.with_detail(hint),
                None => d,
            }
        }
    };
    st.record_failure(now, &policy.throttle);
    decision.failures = Some(st.failures);
    decision.locked_for = st.locked_for(now);
    decision
}

/// Steps on each side searched for a clock-drift hint (±10 minutes at 30 s).
const DRIFT_SEARCH_STEPS: u8 = 20;

/// When codes keep failing (from the second consecutive failure on, so a single typo costs
/// nothing extra), says whether the code would have matched a step outside the window: a
/// drifting phone clock rather than a wrong secret. Never accepts anything.
fn drift_hint(
    record: &UserRecord,
    answer: &[u8],
    now: u64,
    window: u8,
    failures_before: u32,
) -> Option<String> {
    if failures_before == 0 {
        return None;
    }
    let code = totp::normalize_code(answer, record.params.digits())?;
    let skew = match totp::verify(
        &record.secret,
        record.params,
        &code,
        now,
        DRIFT_SEARCH_STEPS,
        0,
    ) {
        Verification::Accepted { skew, .. } | Verification::Replayed { skew } => skew,
        Verification::Rejected => {
            return Some(format!(
                "no match within ±{DRIFT_SEARCH_STEPS} steps either: wrong secret or wrong account in the app?"
            ));
        }
    };
    let seconds = skew * record.params.period() as i64;
    Some(format!(
        "clocks differ by {} s: the code matches {skew:+} steps ({seconds:+} s), outside \
         window={window}; check the server's clock (mfa-enroll doctor) and the phone's",
        seconds.abs()
    ))
}

/// A recovery code. The Argon2 checks run on the record read under this user's lock but
/// *outside* the store-wide lock, so one user's (garbage) recovery attempts never delay another
/// user's login; the matching hash is then removed by `consume` (under the store lock, by
/// value, for files; in the state's compare-and-swap for the fleet), so two logins with one
/// code (or a regeneration in between) still give at most one success. Only input shaped like
/// a recovery code gets here, so TOTP logins never pay for Argon2.
fn decide_recovery(
    record: &UserRecord,
    code: &RecoveryCode,
    policy: &Policy,
    now: u64,
    st: &mut UserState,
    effects: &mut dyn Effects,
    pre: Option<&RecoveryMatch>,
) -> Decision {
    // The hash found before the lock counts only if it is still one of the record's (a
    // regeneration or reset meanwhile makes it stale: then it is no match).
    let matched = match pre {
        Some(RecoveryMatch(found)) => found
            .clone()
            .filter(|hash| record.recovery_codes.contains(hash)),
        None => code
            .find_in(&record.recovery_codes)
            .map(|i| record.recovery_codes[i].clone()),
    };
    let consumed = match matched {
        None => Ok(None),
        Some(hash) => effects.use_recovery(record, st, &hash),
    };
    match consumed {
        Ok(Some((remaining, note))) => {
            st.forget_failures();
            let d = Decision {
                remaining: Some(remaining),
                ..Decision::new_success(Reason::RecoveryCode)
            };
            match note {
                Some(note) => d.with_detail(note),
                None => d,
            }
        }
        Ok(None) => {
            st.record_failure(now, &policy.throttle);
            Decision {
                failures: Some(st.failures),
                locked_for: st.locked_for(now),
                ..Decision::deny(Reason::BadCode).with_detail("not a valid recovery code")
            }
        }
        // The code is not consumed and the login is not accepted: fail closed.
        Err(denial) => denial,
    }
}

/// An HOTP (counter) token. The code must match one of the `hotp_window` counters from the
/// next one on; the counter then moves past it (only forward, only on a success: wrong codes
/// never desynchronise the token). A code further ahead (up to [`HOTP_RESYNC_LIMIT`]) is not
/// accepted but remembered: if the next code is the one right after it, the token is
/// resynchronised (two consecutive codes, as RFC 4226 §7.4 suggests). Codes before the counter
/// are replays.
fn decide_hotp(
    record: &UserRecord,
    policy: &Policy,
    answer: &[u8],
    now: u64,
    st: &mut UserState,
    effects: &mut dyn Effects,
) -> Decision {
    let params = record.params;
    let next = effects.hotp_next(record, st);
    let window = u64::from(policy.hotp_window);
    let Some(code) = totp::normalize_code(answer, params.digits()) else {
        return hotp_failure(Decision::deny(Reason::BadCode), now, policy, st);
    };
    let accept = |counter: u64, st: &mut UserState, effects: &mut dyn Effects| match effects
        .advance_hotp(record, st, counter.saturating_add(1))
    {
        Ok(note) => {
            st.forget_failures();
            st.hotp_resync = 0;
            let d =
                Decision::success(i64::try_from(counter.saturating_sub(next)).unwrap_or(i64::MAX));
            match note {
                Some(note) => d.with_detail(note),
                None => d,
            }
        }
        Err(denial) => denial,
    };
    if let Some(counter) = totp::hotp_verify(&record.secret, params, &code, next, window) {
        return accept(counter, st, effects);
    }
    let beyond = next.saturating_add(window);
    if let Some(counter) =
        totp::hotp_verify(&record.secret, params, &code, beyond, HOTP_RESYNC_LIMIT)
    {
        if st.hotp_resync != 0 && counter == st.hotp_resync {
            let d = accept(counter, st, effects);
            let note = match &d.detail {
                Some(note) => format!("HOTP token resynchronised by two consecutive codes; {note}"),
                None => "HOTP token resynchronised by two consecutive codes".to_string(),
            };
            return d.with_detail(note);
        }
        let d = hotp_failure(
            Decision::deny(Reason::BadCode).with_detail(
                "HOTP code beyond the look-ahead window (the token was pressed many times): the \
                 next code from the token resynchronises it",
            ),
            now,
            policy,
            st,
        );
        st.hotp_resync = counter.saturating_add(1);
        return d;
    }
    let back = next.saturating_sub(window);
    if next > 0 && totp::hotp_verify(&record.secret, params, &code, back, next - back).is_some() {
        return hotp_failure(Decision::deny(Reason::Replay), now, policy, st);
    }
    hotp_failure(Decision::deny(Reason::BadCode), now, policy, st)
}

fn hotp_failure(mut decision: Decision, now: u64, policy: &Policy, st: &mut UserState) -> Decision {
    st.record_failure(now, &policy.throttle);
    st.hotp_resync = 0;
    decision.failures = Some(st.failures);
    decision.locked_for = st.locked_for(now);
    decision
}

/// `try_first_pass`: whether `token` (the password an earlier module checked) is a TOTP/HOTP
/// code that `record` accepts at `now` on a copy of the user's state `st` (so a lockout or a
/// replay makes it "not the code", like any wrong one: no oracle), writing nothing. Only then is it taken
/// as the code (and checked again, for real, under the lock); a password that merely looks like
/// a code or a recovery code is neither taken nor counted, and the code is asked for.
pub fn first_pass_is_a_code(
    record: &UserRecord,
    policy: &Policy,
    st: &UserState,
    token: &[u8],
    now: u64,
) -> bool {
    // Recovery codes are never taken from the password: checking one costs Argon2, and this
    // check is not counted (a recovery code is typed at the prompt).
    if totp::normalize_code(token, record.params.digits()).is_none() {
        return false;
    }
    /// Effects that write nothing.
    struct DryRun;
    impl Effects for DryRun {
        fn use_recovery(
            &mut self,
            _: &UserRecord,
            _: &mut UserState,
            _: &str,
        ) -> Result<Option<(usize, Option<String>)>, Decision> {
            Ok(Some((0, None)))
        }
        fn hotp_next(&self, record: &UserRecord, _: &UserState) -> u64 {
            record.hotp.unwrap_or(0)
        }
        fn advance_hotp(
            &mut self,
            _: &UserRecord,
            _: &mut UserState,
            _: u64,
        ) -> Result<Option<String>, Decision> {
            Ok(None)
        }
    }
    let mut scratch = *st;
    decide(record, policy, token, now, &mut scratch, &mut DryRun, None).outcome == Outcome::Success
}
