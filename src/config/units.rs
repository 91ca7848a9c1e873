//! Value types parsed during deserialization: durations (`250ms`, `1.6s`, `30d`, via humantime),
//! sizes (`512KiB`, `10MiB`, via bytesize), signals, octal modes and listen addresses. A bad
//! value fails right where it is read, so the error carries the value's file:line:col.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, de};

/// A duration written as a humantime string such as `250ms`, `1.6s`, `5m` or `30d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }

    pub const fn from_secs(s: u64) -> Self {
        Self(std::time::Duration::from_secs(s))
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl Duration {
    /// The longest duration any key takes: a century. Every deadline and retention is this far
    /// ahead or back at most, so adding one to a clock reading can never overflow.
    pub const MAX: Duration = Duration::from_secs(100 * 365 * 86_400);
}

impl FromStr for Duration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let d = humantime::parse_duration(s).map(Duration).map_err(|e| {
            // humantime appends its whole unit table; the example below says enough.
            let reason = e.to_string();
            let reason = reason.split(", supported units").next().unwrap_or_default().to_owned();
            format!("invalid duration {s:?}: {reason} (write e.g. 250ms, 1.6s, 5m, 30d)")
        })?;
        if d > Duration::MAX {
            return Err(format!("invalid duration {s:?}: longer than 100 years"));
        }
        Ok(d)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_string(d, "a duration such as \"250ms\" or \"30s\"")
    }
}

/// A byte size written with an explicit unit: `512KiB`, `10MiB`, `1GiB` (or decimal `10MB`).
/// A bare number or a unit without `B` (`10M`: MB or MiB?) is refused rather than guessed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Size(pub u64);

impl Size {
    pub const fn mib(n: u64) -> Self {
        Self(n * 1024 * 1024)
    }

    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unit_ok = s.trim_end().ends_with(['B', 'b']);
        if !unit_ok {
            return Err(format!("invalid size {s:?}: give a unit ending in B, e.g. 512KiB, 10MiB, 1GiB"));
        }
        s.parse::<bytesize::ByteSize>()
            .map(|b| Size(b.as_u64()))
            .map_err(|e| format!("invalid size {s:?}: {e}"))
    }
}

impl fmt::Display for Size {
    /// Exact binary units when they fit (`550MiB`), else one decimal (`1.5GiB`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] =
            [(1 << 40, "TiB"), (1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
        match UNITS.iter().find(|(n, _)| self.0 >= *n) {
            Some((n, unit)) if self.0 % n == 0 => write!(f, "{}{unit}", self.0 / n),
            Some((n, unit)) => write!(f, "{:.1}{unit}", self.0 as f64 / *n as f64),
            None => write!(f, "{}B", self.0),
        }
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_string(d, "a size such as \"512KiB\" or \"10MiB\"")
    }
}

/// A signal name, `SIGTERM` or `TERM`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Signal(pub nix::sys::signal::Signal);

impl FromStr for Signal {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let upper = s.to_ascii_uppercase();
        let full = if upper.starts_with("SIG") { upper } else { format!("SIG{upper}") };
        full.parse::<nix::sys::signal::Signal>()
            .map(Signal)
            .map_err(|_| format!("unknown signal {s:?} (write e.g. SIGTERM, SIGINT, SIGQUIT)"))
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl<'de> Deserialize<'de> for Signal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_string(d, "a signal name such as \"SIGTERM\"")
    }
}

/// A file mode written as an octal string, `"0660"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mode(pub u32);

impl FromStr for Mode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match u32::from_str_radix(s, 8) {
            Ok(m) if m <= 0o7777 => Ok(Mode(m)),
            _ => Err(format!("invalid mode {s:?}: write an octal mode such as \"0660\"")),
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_string(d, "an octal mode string such as \"0660\"")
    }
}

/// A TCP address to listen on, written `IP:PORT` (`"127.0.0.1:9464"`, `"[::1]:9464"`): an IP,
/// not a host name (nothing is resolved at boot), and a fixed port, not 0 (a scraper could not
/// know the one picked).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenAddr(pub std::net::SocketAddr);

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.parse::<std::net::SocketAddr>() {
            Ok(a) if a.port() == 0 => Err(format!("invalid address {s:?}: port 0 would be a random port")),
            Ok(a) => Ok(ListenAddr(a)),
            Err(_) => Err(format!("invalid address {s:?}: write IP:PORT, e.g. \"127.0.0.1:9464\"")),
        }
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for ListenAddr {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        from_string(d, "an address such as \"127.0.0.1:9464\"")
    }
}

/// Deserializes a string and parses it with `FromStr`, turning a parse failure into a custom
/// serde error so it lands on the value's span.
fn from_string<'de, D, T>(d: D, expecting: &'static str) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr<Err = String>,
{
    struct Visitor<T>(&'static str, std::marker::PhantomData<T>);

    impl<T: FromStr<Err = String>> de::Visitor<'_> for Visitor<T> {
        type Value = T;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
            v.parse().map_err(E::custom)
        }
    }

    d.deserialize_str(Visitor(expecting, std::marker::PhantomData))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_from_the_spec_parse() {
        for (text, ms) in [("250ms", 250), ("1.6s", 1600), ("30s", 30_000), ("5m", 300_000)] {
            assert_eq!(text.parse::<Duration>().unwrap(), Duration::from_millis(ms), "{text}");
        }
        assert_eq!("30d".parse::<Duration>().unwrap(), Duration::from_secs(30 * 86_400));
    }

    #[test]
    fn bad_durations_are_refused_with_the_value() {
        for bad in ["", "1.5", "ten seconds", "-1s", "5 parsecs"] {
            let err = bad.parse::<Duration>().unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn sizes_need_an_explicit_unit() {
        assert_eq!("512KiB".parse::<Size>().unwrap(), Size(512 * 1024));
        assert_eq!("10MiB".parse::<Size>().unwrap(), Size::mib(10));
        assert_eq!("1GiB".parse::<Size>().unwrap(), Size::mib(1024));
        assert_eq!("10MB".parse::<Size>().unwrap(), Size(10_000_000));
        assert_eq!(Size::mib(550).to_string(), "550MiB");
        assert_eq!("1.5GiB".parse::<Size>().unwrap().to_string(), "1.5GiB");
        assert_eq!(Size(100).to_string(), "100B");
        for bad in ["512", "10M", "lots", "-1KiB", "1XB", ""] {
            assert!(bad.parse::<Size>().is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn signals_accept_short_and_long_names() {
        use nix::sys::signal::Signal::*;
        assert_eq!("SIGTERM".parse::<Signal>().unwrap().0, SIGTERM);
        assert_eq!("int".parse::<Signal>().unwrap().0, SIGINT);
        assert!("SIGNOPE".parse::<Signal>().is_err());
    }

    #[test]
    fn listen_addresses_are_an_ip_and_a_fixed_port() {
        assert_eq!("127.0.0.1:9464".parse::<ListenAddr>().unwrap().to_string(), "127.0.0.1:9464");
        assert_eq!("[::1]:9464".parse::<ListenAddr>().unwrap().0.port(), 9464);
        for bad in ["localhost:9464", "127.0.0.1", ":9464", "127.0.0.1:99999", "127.0.0.1:0", ""] {
            let err = bad.parse::<ListenAddr>().unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn modes_are_octal() {
        assert_eq!("0660".parse::<Mode>().unwrap(), Mode(0o660));
        assert!("0968".parse::<Mode>().is_err());
        assert!("77777".parse::<Mode>().is_err());
    }
}
