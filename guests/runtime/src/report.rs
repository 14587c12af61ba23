//! Test results, Xen test-framework style: a guest ends by printing exactly one line
//! `Test result: SUCCESS|FAILURE|ERROR|SKIP` and shutting down.
//!
//! [`check!`](crate::check) and friends record a failure (with the message and the line)
//! and carry on, so one run reports every failed expectation; the runtime reports
//! FAILURE after `main` if any check failed, SUCCESS otherwise.

use core::sync::atomic::{AtomicU32, Ordering};

/// The outcome of a test guest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestResult {
    /// Every check passed.
    Success,
    /// Some check failed: the hypervisor misbehaved.
    Failure,
    /// The test itself could not run (unexpected exception, broken set-up).
    Error,
    /// The test does not apply here.
    Skip,
}

impl TestResult {
    /// The word printed after `Test result: `.
    pub fn word(self) -> &'static str {
        match self {
            TestResult::Success => "SUCCESS",
            TestResult::Failure => "FAILURE",
            TestResult::Error => "ERROR",
            TestResult::Skip => "SKIP",
        }
    }
}

static FAILURES: AtomicU32 = AtomicU32::new(0);

/// Records one failed check (prints it).
pub fn fail(file: &str, line: u32, args: core::fmt::Arguments) {
    FAILURES.fetch_add(1, Ordering::SeqCst);
    crate::println!("FAIL {file}:{line}: {args}");
}

/// Number of failed checks so far.
pub fn failures() -> u32 {
    FAILURES.load(Ordering::SeqCst)
}

/// The result for the checks so far: FAILURE if any failed, else SUCCESS.
pub fn current() -> TestResult {
    if failures() > 0 {
        TestResult::Failure
    } else {
        TestResult::Success
    }
}

/// Prints `Test result: <word>` and shuts the domain down: `SHUTDOWN_crash` for ERROR,
/// `SHUTDOWN_poweroff` otherwise. Never returns (halts if the shutdown fails).
pub fn report(result: TestResult) -> ! {
    crate::println!("Test result: {}", result.word());
    let reason = if result == TestResult::Error {
        crate::xen::sched::SHUTDOWN_CRASH
    } else {
        crate::xen::sched::SHUTDOWN_POWEROFF
    };
    exit(reason)
}

/// Shuts down with `reason` and never returns (halts forever if Xen refuses).
pub fn exit(reason: u32) -> ! {
    let rc = crate::hypercall::shutdown(reason);
    crate::println!("SCHEDOP_shutdown returned {rc}; halting");
    crate::cpu::halt_forever()
}

/// Prints the reason and reports SKIP.
pub fn skip(args: core::fmt::Arguments) -> ! {
    crate::println!("SKIP: {args}");
    report(TestResult::Skip)
}

/// Prints the reason and reports ERROR.
pub fn error(args: core::fmt::Arguments) -> ! {
    crate::println!("ERROR: {args}");
    report(TestResult::Error)
}

/// Checks a condition; on failure records it with the message and the line. Evaluates to
/// the condition.
#[macro_export]
macro_rules! check {
    ($cond:expr $(,)?) => {
        $crate::check!($cond, "{}", stringify!($cond))
    };
    ($cond:expr, $($arg:tt)+) => {{
        let ok: bool = $cond;
        if !ok {
            $crate::report::fail(file!(), line!(), format_args!($($arg)+));
        }
        ok
    }};
}

/// Checks `left == right`; on failure records both values, the expressions and the
/// line. Evaluates to whether they were equal.
#[macro_export]
macro_rules! check_eq {
    ($left:expr, $right:expr $(,)?) => {
        $crate::check_eq!($left, $right, "")
    };
    ($left:expr, $right:expr, $($arg:tt)+) => {{
        let (l, r) = (&$left, &$right);
        let ok = *l == *r;
        if !ok {
            $crate::report::fail(
                file!(),
                line!(),
                format_args!(
                    "{} == {}: got {:?}, expected {:?} {}",
                    stringify!($left),
                    stringify!($right),
                    l,
                    r,
                    format_args!($($arg)+)
                ),
            );
        }
        ok
    }};
}

/// Reports SKIP with a message.
#[macro_export]
macro_rules! skip {
    ($($arg:tt)+) => { $crate::report::skip(format_args!($($arg)+)) };
}

/// Reports ERROR with a message.
#[macro_export]
macro_rules! error {
    ($($arg:tt)+) => { $crate::report::error(format_args!($($arg)+)) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words() {
        assert_eq!(TestResult::Success.word(), "SUCCESS");
        assert_eq!(TestResult::Failure.word(), "FAILURE");
        assert_eq!(TestResult::Error.word(), "ERROR");
        assert_eq!(TestResult::Skip.word(), "SKIP");
    }
}
