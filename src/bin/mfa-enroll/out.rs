//! Output that survives a closed pipe, the way coreutils tools do: `mfa-enroll status --all |
//! head` ends quietly with status 141 (what a shell reports for a tool stopped by SIGPIPE)
//! instead of a panic. `println!` would panic on a closed stdout, and a panic while printing
//! recovery codes used to leave an enrollment whose codes nobody saw.
//!
//! Rule for commands that save something the user must see (enroll, reset, recovery): print
//! everything first, then save. A closed stdout then ends the process before anything is
//! written to the store.

use std::io::Write;

/// Exit status when stdout was closed before everything was written (128 + SIGPIPE).
pub const CLOSED_STDOUT: i32 = 141;

/// Writes to stdout and flushes. A closed stdout ends the process at once, quietly, with
/// [`CLOSED_STDOUT`]; any other write error ends it with status 1 and a message on stderr.
pub fn write(args: std::fmt::Arguments<'_>) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(CLOSED_STDOUT);
        }
        warn(format_args!("mfa-enroll: cannot write the output: {e}\n"));
        std::process::exit(1);
    }
}

/// Writes to stderr; a closed stderr is ignored (there is nobody left to tell).
pub fn warn(args: std::fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// `println!` that survives a closed stdout (see the module documentation).
macro_rules! outln {
    () => {
        $crate::out::write(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::out::write(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// `print!` that survives a closed stdout.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::out::write(format_args!($($arg)*))
    };
}

/// `eprintln!` that survives a closed stderr.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::out::warn(format_args!("{}\n", format_args!($($arg)*)))
    };
}
