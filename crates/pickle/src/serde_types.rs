//! serde adapters between Rust types and Python's everyday types: `datetime`,
//! `Decimal`, `UUID`.
//!
//! Invariant: an adapter passes one *wire text* through serde inside a newtype struct
//! with a reserved name (`$pickleshelf::pytype::KIND`). This crate's serializers turn
//! that text into the Python object ([`crate::pytypes`]) and its deserializers give the
//! object's wire text back; any other serde format sees a newtype holding a string (an
//! ISO 8601 date, a decimal, a hyphenated UUID), so a type using an adapter still works
//! with `serde_json` and the like. A plain `str` in a pickle is read as wire text too.
//!
//! | kind | Python | wire text |
//! |---|---|---|
//! | `datetime` | `datetime.datetime` | `datetime.isoformat()`: `2024-01-02T03:04:05.000006[+05:30]` |
//! | `date` | `datetime.date` | `2024-01-02` |
//! | `time` | `datetime.time` | `03:04:05.000006[+05:30]` |
//! | `timedelta` | `datetime.timedelta` | the whole duration in microseconds, as a decimal integer |
//! | `decimal` | `decimal.Decimal` | `str(d)` |
//! | `uuid` | `uuid.UUID` | `str(u)`, hyphenated |
//!
//! Reading needs no adapter for the types whose serde form is text: a known object
//! deserialized as a string (`deserialize_str`, `deserialize_any`) gives its
//! [`crate::pytypes::plain_text`], so `from_slice::<chrono::NaiveDateTime>`,
//! `from_slice::<uuid::Uuid>` and `from_slice::<rust_decimal::Decimal>` read the Python
//! objects through those crates' own `Deserialize` (with the features `chrono`, `uuid`,
//! `rust_decimal` of this crate). Writing the Python object takes an adapter
//! (`#[serde(with = "pickleshelf_pickle::serde_types::uuid")]`), since those crates
//! serialize as plain strings.

use serde::de::{self, Deserializer, Visitor};
use serde::ser::{Serialize, Serializer};

use crate::pytypes::{Date, DateTime, Decimal, PyAtom, PyObject, Time, TimeDelta, TimeZone, TzInfo, Uuid};
use crate::value::{Node, NodeId, Value};
use crate::{Error, Result};

/// The prefix of the reserved newtype names.
pub(crate) const PREFIX: &str = "$pickleshelf::pytype::";

/// What an adapter carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `datetime.datetime`.
    DateTime,
    /// `datetime.date`.
    Date,
    /// `datetime.time`.
    Time,
    /// `datetime.timedelta`.
    TimeDelta,
    /// `decimal.Decimal`.
    Decimal,
    /// `uuid.UUID`.
    Uuid,
}

impl Kind {
    /// The reserved newtype name that carries this kind.
    pub const fn newtype_name(self) -> &'static str {
        match self {
            Kind::DateTime => "$pickleshelf::pytype::datetime",
            Kind::Date => "$pickleshelf::pytype::date",
            Kind::Time => "$pickleshelf::pytype::time",
            Kind::TimeDelta => "$pickleshelf::pytype::timedelta",
            Kind::Decimal => "$pickleshelf::pytype::decimal",
            Kind::Uuid => "$pickleshelf::pytype::uuid",
        }
    }

    /// The kind a reserved newtype name carries.
    pub(crate) fn from_newtype_name(name: &str) -> Option<Kind> {
        Some(match name.strip_prefix(PREFIX)? {
            "datetime" => Kind::DateTime,
            "date" => Kind::Date,
            "time" => Kind::Time,
            "timedelta" => Kind::TimeDelta,
            "decimal" => Kind::Decimal,
            "uuid" => Kind::Uuid,
            _ => return None,
        })
    }

    fn python_type(self) -> &'static str {
        match self {
            Kind::DateTime => DateTime::PYTHON_TYPE,
            Kind::Date => Date::PYTHON_TYPE,
            Kind::Time => Time::PYTHON_TYPE,
            Kind::TimeDelta => TimeDelta::PYTHON_TYPE,
            Kind::Decimal => Decimal::PYTHON_TYPE,
            Kind::Uuid => Uuid::PYTHON_TYPE,
        }
    }
}

/// The wire text of the object at `id`, read as `kind`.
///
/// # Errors
/// [`Error::PyType`] when it is not that kind of object, or malformed.
pub(crate) fn wire_text(kind: Kind, value: &Value, id: NodeId) -> Result<String> {
    Ok(match kind {
        Kind::DateTime => DateTime::read(value, id)?.isoformat(),
        Kind::Date => Date::read(value, id)?.isoformat(),
        Kind::Time => Time::read(value, id)?.isoformat(),
        Kind::TimeDelta => TimeDelta::read(value, id)?.total_microseconds().to_string(),
        Kind::Decimal => Decimal::read(value, id)?.as_str().to_owned(),
        Kind::Uuid => Uuid::read(value, id)?.hyphenated(),
    })
}

/// The Python object a wire text stands for, as a value of its own.
///
/// # Errors
/// [`Error::PyType`] when the text is not of the kind's form.
pub(crate) fn object_from_wire(kind: Kind, text: &str) -> Result<Value> {
    let ty = kind.python_type();
    let bad = |what: &str| crate::pytypes::bad(ty, format!("{text:?} is not {what}"));
    Ok(match kind {
        Kind::DateTime => {
            let (d, t) = text.split_once('T').ok_or_else(|| bad("an ISO 8601 date and time"))?;
            let date = parse_date(d).ok_or_else(|| bad("an ISO 8601 date and time"))?.map_err(|e| retype(e, ty))?;
            let time = parse_time(t).ok_or_else(|| bad("an ISO 8601 date and time"))?.map_err(|e| retype(e, ty))?;
            DateTime::new(date, time).to_value()
        }
        Kind::Date => parse_date(text).ok_or_else(|| bad("an ISO 8601 date"))??.to_value(),
        Kind::Time => parse_time(text).ok_or_else(|| bad("an ISO 8601 time"))??.to_value(),
        Kind::TimeDelta => {
            let us: i128 = text.parse().map_err(|_| bad("a number of microseconds"))?;
            TimeDelta::from_microseconds(us)?.to_value()
        }
        Kind::Decimal => Decimal::new(text)?.to_value(),
        Kind::Uuid => {
            let hex: String = text.chars().filter(|&c| c != '-').collect();
            if hex.len() != 32 {
                return Err(bad("a UUID"));
            }
            Uuid(u128::from_str_radix(&hex, 16).map_err(|_| bad("a UUID"))?).to_value()
        }
    })
}

/// The same error, naming `ty` (a datetime's date or time part was checked on its own).
fn retype(e: Error, ty: &'static str) -> Error {
    match e {
        Error::PyType { message, .. } => Error::PyType { type_name: ty, message },
        other => other,
    }
}

fn digits<T: std::str::FromStr>(s: &str, n: usize) -> Option<T> {
    if s.len() == n && s.bytes().all(|b| b.is_ascii_digit()) { s.parse().ok() } else { None }
}

/// `YYYY-MM-DD`; `None` when not of that form, `Some(Err)` when out of range.
fn parse_date(s: &str) -> Option<Result<Date>> {
    let mut it = s.split('-');
    let (y, m, d) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() {
        return None;
    }
    Some(Date::new(digits(y, 4)?, digits(m, 2)?, digits(d, 2)?))
}

/// `HH:MM[:SS[.ffffff]][±HH:MM[:SS[.ffffff]]|Z]` (fractions of 1–9 digits; digits past
/// the sixth are dropped, as Python keeps microseconds).
fn parse_time(s: &str) -> Option<Result<Time>> {
    let (clock, tz) = match s.find(['+', '-', 'Z']) {
        Some(i) => (&s[..i], Some(&s[i..])),
        None => (s, None),
    };
    let (h, m, sec, us) = parse_clock(clock)?;
    let tzinfo = match tz {
        None => None,
        Some("Z") => Some(TzInfo::TimeZone(TimeZone::utc())),
        Some(off) => {
            let sign: i64 = if off.starts_with('-') { -1 } else { 1 };
            let (oh, om, os, ous) = parse_clock(&off[1..])?;
            let total =
                sign * ((i64::from(oh) * 3600 + i64::from(om) * 60 + i64::from(os)) * 1_000_000 + i64::from(ous));
            let delta = match TimeDelta::new(0, 0, total) {
                Ok(d) => d,
                Err(e) => return Some(Err(e)),
            };
            match TimeZone::new(delta, None) {
                Ok(tz) => Some(TzInfo::TimeZone(tz)),
                Err(e) => return Some(Err(e)),
            }
        }
    };
    Some(Time::new(h, m, sec, us).map(|t| t.with_tzinfo(tzinfo)))
}

fn parse_clock(s: &str) -> Option<(u8, u8, u8, u32)> {
    let (hms, frac) = match s.split_once('.') {
        Some((a, f)) => (a, Some(f)),
        None => (s, None),
    };
    let mut it = hms.split(':');
    let h = digits(it.next()?, 2)?;
    let m = digits(it.next()?, 2)?;
    let sec = match it.next() {
        Some(x) => digits(x, 2)?,
        None => 0,
    };
    if it.next().is_some() {
        return None;
    }
    let us = match frac {
        None => 0,
        Some(f) if (1..=9).contains(&f.len()) && f.bytes().all(|b| b.is_ascii_digit()) => {
            let six: String = f.chars().chain(std::iter::repeat('0')).take(6).collect();
            six.parse().ok()?
        }
        Some(_) => return None,
    };
    Some((h, m, sec, us))
}

/// The text a value of the serializer's content holds (adapters serialize a `str`).
pub(crate) fn captured_text<T: Serialize + ?Sized>(kind: Kind, content: &T) -> Result<String> {
    let v = crate::to_value(content)?;
    match v.root_node() {
        Node::Str(s) => s
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| crate::pytypes::bad(kind.python_type(), "text with lone surrogates")),
        other => {
            Err(crate::pytypes::bad(kind.python_type(), format!("the adapter gave {}, not text", other.type_name())))
        }
    }
}

/// Serializes wire `text` as the Python object of `kind` (through this crate's
/// serializers) or as a newtype holding the text (any other format).
fn serialize_wire<S: Serializer>(kind: Kind, text: &str, serializer: S) -> std::result::Result<S::Ok, S::Error> {
    serializer.serialize_newtype_struct(kind.newtype_name(), text)
}

/// Deserializes the wire text of `kind`: the object's (this crate's deserializers) or
/// a string's (any format).
fn deserialize_wire<'de, D: Deserializer<'de>>(kind: Kind, deserializer: D) -> std::result::Result<String, D::Error> {
    struct Wire;
    impl<'de> Visitor<'de> for Wire {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a Python object or its text")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_string<E: de::Error>(self, v: String) -> std::result::Result<String, E> {
            Ok(v)
        }
        fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> std::result::Result<String, D::Error> {
            d.deserialize_string(Wire)
        }
    }
    deserializer.deserialize_newtype_struct(kind.newtype_name(), Wire)
}

/// Python's everyday types, as themselves: [`crate::pytypes`]'s structs through serde.
macro_rules! pytype_serde {
    ($ty:ty, $kind:expr, $to_text:expr, $from:expr) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                let text: String = $to_text(self);
                serialize_wire($kind, &text, s)
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                let text = deserialize_wire($kind, d)?;
                let v = object_from_wire($kind, &text).map_err(de::Error::custom)?;
                $from(&v).map_err(de::Error::custom)
            }
        }
    };
}

pytype_serde!(DateTime, Kind::DateTime, |x: &DateTime| x.isoformat(), |v: &Value| DateTime::read(v, v.root()));
pytype_serde!(Date, Kind::Date, |x: &Date| x.isoformat(), |v: &Value| Date::read(v, v.root()));
pytype_serde!(Time, Kind::Time, |x: &Time| x.isoformat(), |v: &Value| Time::read(v, v.root()));
pytype_serde!(TimeDelta, Kind::TimeDelta, |x: &TimeDelta| x.total_microseconds().to_string(), |v: &Value| {
    TimeDelta::read(v, v.root())
});
pytype_serde!(Decimal, Kind::Decimal, |x: &Decimal| x.as_str().to_owned(), |v: &Value| Decimal::read(v, v.root()));
pytype_serde!(Uuid, Kind::Uuid, |x: &Uuid| x.hyphenated(), |v: &Value| Uuid::read(v, v.root()));

/// Maps an adapter's parse failure to a serde error naming the Python type.
#[cfg(any(feature = "chrono", feature = "rust_decimal", feature = "uuid"))]
fn parse_error<E: de::Error>(kind: Kind, text: &str, why: impl std::fmt::Display) -> E {
    E::custom(Error::PyType { type_name: kind.python_type(), message: format!("{text:?}: {why}") })
}

/// `chrono::NaiveDateTime` ↔ `datetime.datetime` without tzinfo (nanoseconds are
/// truncated to microseconds; a tz-aware datetime is an error).
///
/// ```
/// # #[cfg(feature = "chrono")] {
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Event {
///     #[serde(with = "pickleshelf_pickle::serde_types::datetime")]
///     at: chrono::NaiveDateTime,
/// }
/// # }
/// ```
#[cfg(feature = "chrono")]
pub mod datetime {
    use super::*;
    use chrono::NaiveDateTime;

    /// Writes the `datetime.datetime`.
    ///
    /// # Errors
    /// None of its own; the serializer's.
    pub fn serialize<S: Serializer>(v: &NaiveDateTime, s: S) -> std::result::Result<S::Ok, S::Error> {
        serialize_wire(Kind::DateTime, &v.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(), s)
    }

    /// Reads a `datetime.datetime` without tzinfo (or its ISO text).
    ///
    /// # Errors
    /// Another object, a tz-aware datetime, malformed state.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<NaiveDateTime, D::Error> {
        let text = deserialize_wire(Kind::DateTime, d)?;
        NaiveDateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M:%S%.f")
            .map_err(|e| parse_error(Kind::DateTime, &text, format!("{e} (a naive datetime has no UTC offset)")))
    }
}

/// `chrono::DateTime<FixedOffset>` ↔ `datetime.datetime` with a `datetime.timezone`
/// tzinfo (`chrono::DateTime<Utc>` converts with `.into()` / `.with_timezone(&Utc)`).
#[cfg(feature = "chrono")]
pub mod datetime_offset {
    use super::*;
    use chrono::{DateTime, FixedOffset};

    /// Writes the `datetime.datetime` with `timezone(offset)`.
    ///
    /// # Errors
    /// None of its own; the serializer's.
    pub fn serialize<S: Serializer>(v: &DateTime<FixedOffset>, s: S) -> std::result::Result<S::Ok, S::Error> {
        serialize_wire(Kind::DateTime, &v.format("%Y-%m-%dT%H:%M:%S%.6f%:z").to_string(), s)
    }

    /// Reads a tz-aware `datetime.datetime` (a `timezone` tzinfo).
    ///
    /// # Errors
    /// Another object, a naive datetime, a `zoneinfo` tzinfo, malformed state.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<DateTime<FixedOffset>, D::Error> {
        let text = deserialize_wire(Kind::DateTime, d)?;
        DateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M:%S%.f%:z")
            .map_err(|e| parse_error(Kind::DateTime, &text, format!("{e} (expected a UTC offset)")))
    }
}

/// `chrono::NaiveDate` ↔ `datetime.date`.
#[cfg(feature = "chrono")]
pub mod date {
    use super::*;
    use chrono::NaiveDate;

    /// Writes the `datetime.date`.
    ///
    /// # Errors
    /// None of its own; the serializer's.
    pub fn serialize<S: Serializer>(v: &NaiveDate, s: S) -> std::result::Result<S::Ok, S::Error> {
        serialize_wire(Kind::Date, &v.format("%Y-%m-%d").to_string(), s)
    }

    /// Reads a `datetime.date`.
    ///
    /// # Errors
    /// Another object, malformed state.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<NaiveDate, D::Error> {
        let text = deserialize_wire(Kind::Date, d)?;
        NaiveDate::parse_from_str(&text, "%Y-%m-%d").map_err(|e| parse_error(Kind::Date, &text, e))
    }
}

/// `chrono::NaiveTime` ↔ `datetime.time` without tzinfo.
#[cfg(feature = "chrono")]
pub mod time {
    use super::*;
    use chrono::NaiveTime;

    /// Writes the `datetime.time` (nanoseconds truncated to microseconds; a leap second
    /// is an error, as Python has none).
    ///
    /// # Errors
    /// A leap second.
    pub fn serialize<S: Serializer>(v: &NaiveTime, s: S) -> std::result::Result<S::Ok, S::Error> {
        serialize_wire(Kind::Time, &v.format("%H:%M:%S%.6f").to_string(), s)
    }

    /// Reads a `datetime.time` without tzinfo.
    ///
    /// # Errors
    /// Another object, a tz-aware time, malformed state.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<NaiveTime, D::Error> {
        let text = deserialize_wire(Kind::Time, d)?;
        NaiveTime::parse_from_str(&text, "%H:%M:%S%.f").map_err(|e| parse_error(Kind::Time, &text, e))
    }
}

/// `chrono::TimeDelta` ↔ `datetime.timedelta` (nanoseconds truncated to microseconds).
#[cfg(feature = "chrono")]
pub mod timedelta {
    use super::*;
    use chrono::TimeDelta;

    /// Writes the `datetime.timedelta`.
    ///
    /// # Errors
    /// A duration beyond ±999,999,999 days (Python's limit).
    pub fn serialize<S: Serializer>(v: &TimeDelta, s: S) -> std::result::Result<S::Ok, S::Error> {
        let us = i128::from(v.num_seconds()) * 1_000_000 + i128::from(v.subsec_nanos() / 1000);
        serialize_wire(Kind::TimeDelta, &us.to_string(), s)
    }

    /// Reads a `datetime.timedelta`.
    ///
    /// # Errors
    /// Another object, malformed state, a duration beyond `chrono::TimeDelta`'s range.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<TimeDelta, D::Error> {
        let text = deserialize_wire(Kind::TimeDelta, d)?;
        let us: i64 = text.parse().map_err(|e| parse_error(Kind::TimeDelta, &text, e))?;
        Ok(TimeDelta::microseconds(us))
    }
}

/// `rust_decimal::Decimal` ↔ `decimal.Decimal` (NaN, infinities and values beyond
/// rust_decimal's 96-bit range are errors when reading).
#[cfg(feature = "rust_decimal")]
pub mod decimal {
    use super::*;
    use std::str::FromStr;

    /// Writes the `decimal.Decimal` (`Decimal(str(v))`, so the scale is kept: `1.50`).
    ///
    /// # Errors
    /// None of its own; the serializer's.
    pub fn serialize<S: Serializer>(v: &rust_decimal::Decimal, s: S) -> std::result::Result<S::Ok, S::Error> {
        serialize_wire(Kind::Decimal, &v.to_string(), s)
    }

    /// Reads a `decimal.Decimal` (or its text).
    ///
    /// # Errors
    /// Another object, NaN, an infinity, a value rust_decimal cannot hold.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<rust_decimal::Decimal, D::Error> {
        let text = deserialize_wire(Kind::Decimal, d)?;
        rust_decimal::Decimal::from_str(&text)
            .or_else(|_| rust_decimal::Decimal::from_scientific(&text))
            .map_err(|e| parse_error(Kind::Decimal, &text, e))
    }
}

/// `uuid::Uuid` ↔ `uuid.UUID`.
#[cfg(feature = "uuid")]
pub mod uuid {
    use super::*;

    /// Writes the `uuid.UUID`.
    ///
    /// # Errors
    /// None of its own; the serializer's.
    pub fn serialize<S: Serializer>(v: &::uuid::Uuid, s: S) -> std::result::Result<S::Ok, S::Error> {
        serialize_wire(Kind::Uuid, &v.hyphenated().to_string(), s)
    }

    /// Reads a `uuid.UUID` (or its text).
    ///
    /// # Errors
    /// Another object, malformed state.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<::uuid::Uuid, D::Error> {
        let text = deserialize_wire(Kind::Uuid, d)?;
        ::uuid::Uuid::parse_str(&text).map_err(|e| parse_error(Kind::Uuid, &text, e))
    }
}
