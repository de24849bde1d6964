//! Messages to ig's log, at upstream's levels. The macros skip formatting
//! when the level is not shown (`ig run -v` shows debug).

use crate::helpers::string_to_buf_ptr;

#[link(wasm_import_module = "ig")]
extern "C" {
    #[link_name = "gadgetLog"]
    fn ig_log(level: u32, msg: u64);
    #[link_name = "gadgetShouldLog"]
    fn ig_should_log(level: u32) -> u32;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Error = 0,
    Warn = 1,
    Info = 2,
    Debug = 3,
    Trace = 4,
}

pub fn log(level: LogLevel, message: &str) {
    // SAFETY: the message outlives the call; the host only reads it.
    unsafe { ig_log(level as u32, string_to_buf_ptr(message).0) }
}

/// Whether a message at `level` would be shown.
pub fn should_log(level: LogLevel) -> bool {
    // SAFETY: a plain call without pointers.
    unsafe { ig_should_log(level as u32) == 1 }
}

/// `log!(level, a, b, ...)`: the strings joined by spaces.
#[macro_export]
macro_rules! log {
    ($level:expr, $($part:expr),+ $(,)?) => {{
        let level = $level;
        if $crate::log::should_log(level) {
            let mut message = ::std::string::String::new();
            $(
                if !message.is_empty() {
                    message.push(' ');
                }
                message.push_str(::core::convert::AsRef::<str>::as_ref(&$part));
            )+
            $crate::log::log(level, &message);
        }
    }};
}

/// `logf!(level, "format {}", args...)`.
#[macro_export]
macro_rules! logf {
    ($level:expr, $($fmt:tt)+) => {{
        let level = $level;
        if $crate::log::should_log(level) {
            $crate::log::log(level, &::std::format!($($fmt)+));
        }
    }};
}

#[macro_export]
macro_rules! error {
    ($($part:expr),+ $(,)?) => { $crate::log!($crate::log::LogLevel::Error, $($part),+) };
}
#[macro_export]
macro_rules! errorf {
    ($($fmt:tt)+) => { $crate::logf!($crate::log::LogLevel::Error, $($fmt)+) };
}
#[macro_export]
macro_rules! warn {
    ($($part:expr),+ $(,)?) => { $crate::log!($crate::log::LogLevel::Warn, $($part),+) };
}
#[macro_export]
macro_rules! warnf {
    ($($fmt:tt)+) => { $crate::logf!($crate::log::LogLevel::Warn, $($fmt)+) };
}
#[macro_export]
macro_rules! info {
    ($($part:expr),+ $(,)?) => { $crate::log!($crate::log::LogLevel::Info, $($part),+) };
}
#[macro_export]
macro_rules! infof {
    ($($fmt:tt)+) => { $crate::logf!($crate::log::LogLevel::Info, $($fmt)+) };
}
#[macro_export]
macro_rules! debug {
    ($($part:expr),+ $(,)?) => { $crate::log!($crate::log::LogLevel::Debug, $($part),+) };
}
#[macro_export]
macro_rules! debugf {
    ($($fmt:tt)+) => { $crate::logf!($crate::log::LogLevel::Debug, $($fmt)+) };
}
#[macro_export]
macro_rules! trace {
    ($($part:expr),+ $(,)?) => { $crate::log!($crate::log::LogLevel::Trace, $($part),+) };
}
#[macro_export]
macro_rules! tracef {
    ($($fmt:tt)+) => { $crate::logf!($crate::log::LogLevel::Trace, $($fmt)+) };
}
