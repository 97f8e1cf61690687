//! `datetime.date`, `time`, `datetime`, `timedelta`, `timezone` (and `zoneinfo.ZoneInfo`
//! as a tzinfo).
//!
//! Invariant: a value of these types holds only what Python's constructors accept
//! (`1 <= year <= 9999`, a day that exists in its month, `hour < 24`, ..., a timezone
//! offset strictly between -24 and 24 hours); every constructor and reader checks it.
//!
//! CPython pickles a `date`, `time` or `datetime` as `cls(state[, tzinfo])`, `state`
//! being packed bytes (at protocols 0–2 written as `_codecs.encode(text, 'latin1')`, which
//! the decoder turns into bytes):
//!
//! | type | state bytes |
//! |---|---|
//! | `date` | year (2 bytes, big-endian), month, day |
//! | `time` | hour (bit 7: `fold`), minute, second, microsecond (3 bytes, big-endian) |
//! | `datetime` | year (2), month (bit 7: `fold`), day, hour, minute, second, microsecond (3) |
//!
//! A `timedelta` is `timedelta(days, seconds, microseconds)`, a `timezone`
//! `timezone(offset[, name])`, a `zoneinfo.ZoneInfo` `getattr(ZoneInfo, '_unpickle')(key, 1)`.

use std::fmt;

use super::{PyAtom, PyObject, bad, bytes_arg, call, describe, i64_arg, push_call, push_global, push_reduce, str_arg};
use crate::Result;
use crate::repr::str_repr;
use crate::value::{Node, NodeId, ObjectOp, Value};

const DATE: &str = "datetime.date";
const TIME: &str = "datetime.time";
const DATETIME: &str = "datetime.datetime";
const TIMEDELTA: &str = "datetime.timedelta";
const TIMEZONE: &str = "datetime.timezone";

fn is_leap(year: u16) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u16, month: u8) -> u8 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// A `datetime.date`: a day of the proleptic Gregorian calendar, years 1 to 9999.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Date {
    year: u16,
    month: u8,
    day: u8,
}

impl Date {
    /// `datetime.date(year, month, day)`.
    ///
    /// # Errors
    /// [`crate::Error::PyType`] when a field is out of range (as Python's `ValueError`).
    pub fn new(year: u16, month: u8, day: u8) -> Result<Date> {
        check_date(DATE, year, month, day)?;
        Ok(Date { year, month, day })
    }

    /// The year, 1–9999.
    pub fn year(&self) -> u16 {
        self.year
    }

    /// The month, 1–12.
    pub fn month(&self) -> u8 {
        self.month
    }

    /// The day of the month, from 1.
    pub fn day(&self) -> u8 {
        self.day
    }

    /// `date.isoformat()`: `2024-01-02`.
    pub fn isoformat(&self) -> String {
        format!("{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }

    fn state(&self) -> [u8; 4] {
        let [hi, lo] = self.year.to_be_bytes();
        [hi, lo, self.month, self.day]
    }
}

fn check_date(ty: &'static str, year: u16, month: u8, day: u8) -> Result<()> {
    if !(1..=9999).contains(&year) {
        return Err(bad(ty, format!("year {year} is out of range 1..=9999")));
    }
    if !(1..=12).contains(&month) {
        return Err(bad(ty, format!("month {month} is out of range 1..=12")));
    }
    let last = days_in_month(year, month);
    if !(1..=last).contains(&day) {
        return Err(bad(ty, format!("day {day} is out of range 1..={last} for {year:04}-{month:02}")));
    }
    Ok(())
}

fn check_time(ty: &'static str, hour: u8, minute: u8, second: u8, microsecond: u32) -> Result<()> {
    if hour > 23 {
        return Err(bad(ty, format!("hour {hour} is out of range 0..=23")));
    }
    if minute > 59 {
        return Err(bad(ty, format!("minute {minute} is out of range 0..=59")));
    }
    if second > 59 {
        return Err(bad(ty, format!("second {second} is out of range 0..=59")));
    }
    if microsecond > 999_999 {
        return Err(bad(ty, format!("microsecond {microsecond} is out of range 0..=999999")));
    }
    Ok(())
}

impl fmt::Display for Date {
    /// Python's `repr`: `datetime.date(2024, 1, 2)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "datetime.date({}, {}, {})", self.year, self.month, self.day)
    }
}

impl PyObject for Date {
    const PYTHON_TYPE: &'static str = DATE;

    fn read(value: &Value, id: NodeId) -> Result<Date> {
        let c = call(value, id, DATE, |m, n| m == "datetime" && n == "date")?;
        super::no_ops(DATE, c.ops)?;
        let [state] = c.args else {
            return Err(bad(DATE, format!("expected 1 argument (the state), found {}", c.args.len())));
        };
        let s = bytes_arg(value, *state, DATE, "the state")?;
        let &[hi, lo, month, day] = s else {
            return Err(bad(DATE, format!("the state has {} bytes, not 4", s.len())));
        };
        Date::new(u16::from_be_bytes([hi, lo]), month, day)
    }

    fn write(&self, value: &mut Value) -> NodeId {
        let state = value.push(Node::Bytes(self.state().to_vec()));
        push_reduce(value, "datetime", "date", vec![state], Vec::new())
    }
}

impl PyAtom for Date {}

/// The `tzinfo` of a `time` or `datetime`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TzInfo {
    /// A `datetime.timezone`: a fixed offset.
    TimeZone(TimeZone),
    /// A `zoneinfo.ZoneInfo` by its IANA key (`Europe/Paris`); its rules are not read.
    ZoneInfo(String),
}

impl TzInfo {
    fn read(value: &Value, id: NodeId, ty: &'static str) -> Result<TzInfo> {
        if value.object_type(id) == Some(("datetime", "timezone")) {
            return TimeZone::read(value, id).map(TzInfo::TimeZone);
        }
        // getattr(zoneinfo.ZoneInfo, '_unpickle')(key, from_cache)
        if let Ok(outer) = call_of_object(value, id)
            && let Ok(inner) = call(value, outer.0, ty, |m, n| m == "builtins" && n == "getattr")
            && let [cls, attr] = inner.args
            && matches!(super::global_at(value, *cls), Some(g) if g.module == "zoneinfo" && g.name == "ZoneInfo")
            && value.as_str(*attr) == Some("_unpickle")
        {
            let [key, _from_cache] = outer.1 else {
                return Err(bad(ty, "zoneinfo.ZoneInfo: expected 2 arguments (key, from_cache)"));
            };
            return Ok(TzInfo::ZoneInfo(str_arg(value, *key, ty, "the zoneinfo key")?.to_owned()));
        }
        Err(bad(
            ty,
            format!(
                "tzinfo of type {} is not supported (only datetime.timezone and zoneinfo.ZoneInfo)",
                describe(value, id)
            ),
        ))
    }

    fn write(&self, value: &mut Value) -> NodeId {
        match self {
            TzInfo::TimeZone(tz) => tz.write(value),
            TzInfo::ZoneInfo(key) => {
                let cls = push_global(value, "zoneinfo", "ZoneInfo");
                let attr = value.push(Node::Str("_unpickle".into()));
                let getattr = push_reduce(value, "builtins", "getattr", vec![cls, attr], Vec::new());
                let key = value.push(Node::Str(key.as_str().into()));
                let from_cache = value.push(Node::Int(1));
                push_call(value, getattr, vec![key, from_cache], Vec::new())
            }
        }
    }

    /// `+05:30` (what `isoformat` appends), or `[Europe/Paris]` for a zoneinfo, whose
    /// offset depends on rules this codec does not read.
    fn iso_suffix(&self) -> String {
        match self {
            TzInfo::TimeZone(tz) => tz.offset.iso_offset(),
            TzInfo::ZoneInfo(key) => format!("[{key}]"),
        }
    }
}

impl fmt::Display for TzInfo {
    /// Python's `repr`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TzInfo::TimeZone(tz) => tz.fmt(f),
            TzInfo::ZoneInfo(key) => write!(f, "zoneinfo.ZoneInfo(key={})", str_repr(&key.as_str().into())),
        }
    }
}

/// The callable and arguments of a `REDUCE` whose callable is itself an object.
fn call_of_object(value: &Value, id: NodeId) -> std::result::Result<(NodeId, &[NodeId]), ()> {
    let Some(Node::Object(o)) = value.get(id) else { return Err(()) };
    let crate::value::Construct::Reduce { callable, args } = o.construct else { return Err(()) };
    if !o.ops.is_empty() {
        return Err(());
    }
    match value.get(args) {
        Some(Node::Tuple(items)) => Ok((callable, items)),
        _ => Err(()),
    }
}

/// A `datetime.time`: a time of day, with an optional tzinfo and `fold`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Time {
    hour: u8,
    minute: u8,
    second: u8,
    microsecond: u32,
    fold: bool,
    tzinfo: Option<TzInfo>,
}

impl Time {
    /// `datetime.time(hour, minute, second, microsecond)`, without tzinfo, `fold=0`.
    ///
    /// # Errors
    /// [`crate::Error::PyType`] when a field is out of range.
    pub fn new(hour: u8, minute: u8, second: u8, microsecond: u32) -> Result<Time> {
        check_time(TIME, hour, minute, second, microsecond)?;
        Ok(Time { hour, minute, second, microsecond, fold: false, tzinfo: None })
    }

    /// The same time with this tzinfo.
    pub fn with_tzinfo(self, tzinfo: Option<TzInfo>) -> Time {
        Time { tzinfo, ..self }
    }

    /// The same time with this `fold`.
    pub fn with_fold(self, fold: bool) -> Time {
        Time { fold, ..self }
    }

    /// The hour, 0–23.
    pub fn hour(&self) -> u8 {
        self.hour
    }

    /// The minute, 0–59.
    pub fn minute(&self) -> u8 {
        self.minute
    }

    /// The second, 0–59.
    pub fn second(&self) -> u8 {
        self.second
    }

    /// The microsecond, 0–999999.
    pub fn microsecond(&self) -> u32 {
        self.microsecond
    }

    /// `fold` (PEP 495): the later of two times a clock shows twice.
    pub fn fold(&self) -> bool {
        self.fold
    }

    /// The tzinfo, if any.
    pub fn tzinfo(&self) -> Option<&TzInfo> {
        self.tzinfo.as_ref()
    }

    /// `time.isoformat()`: `03:04:05.000006+00:00`.
    pub fn isoformat(&self) -> String {
        let mut s = format!("{:02}:{:02}:{:02}", self.hour, self.minute, self.second);
        if self.microsecond != 0 {
            s.push_str(&format!(".{:06}", self.microsecond));
        }
        if let Some(tz) = &self.tzinfo {
            s.push_str(&tz.iso_suffix());
        }
        s
    }

    fn state(&self) -> [u8; 6] {
        let us = self.microsecond.to_be_bytes();
        [self.hour | if self.fold { 0x80 } else { 0 }, self.minute, self.second, us[1], us[2], us[3]]
    }

    /// Reads `hour|fold, minute, second, us(3)`.
    fn from_state(ty: &'static str, s: &[u8], fold_bit: bool) -> Result<Time> {
        let &[h, mi, sec, u0, u1, u2] = s else {
            return Err(bad(ty, format!("the time part of the state has {} bytes, not 6", s.len())));
        };
        let (hour, fold) = if fold_bit { (h & 0x7F, h & 0x80 != 0) } else { (h, false) };
        let microsecond = u32::from_be_bytes([0, u0, u1, u2]);
        check_time(ty, hour, mi, sec, microsecond)?;
        Ok(Time { hour, minute: mi, second: sec, microsecond, fold, tzinfo: None })
    }

    /// The positional fields Python's repr shows: all four, or fewer when the trailing
    /// ones are zero (never fewer than hour and minute).
    fn repr_fields(&self) -> String {
        if self.microsecond != 0 {
            format!("{}, {}, {}, {}", self.hour, self.minute, self.second, self.microsecond)
        } else if self.second != 0 {
            format!("{}, {}, {}", self.hour, self.minute, self.second)
        } else {
            format!("{}, {}", self.hour, self.minute)
        }
    }

    fn repr_keywords(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(tz) = &self.tzinfo {
            write!(f, ", tzinfo={tz}")?;
        }
        if self.fold {
            f.write_str(", fold=1")?;
        }
        Ok(())
    }
}

impl fmt::Display for Time {
    /// Python's `repr`: `datetime.time(3, 4, 5, 6, tzinfo=datetime.timezone.utc)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "datetime.time({}", self.repr_fields())?;
        self.repr_keywords(f)?;
        f.write_str(")")
    }
}

/// Reads `(state,)`, `(state, None)` or `(state, tzinfo)`.
fn state_and_tz<'v>(value: &'v Value, args: &[NodeId], ty: &'static str) -> Result<(&'v [u8], Option<TzInfo>)> {
    let (state, tz) = match args {
        [s] => (*s, None),
        [s, tz] => (*s, Some(*tz)),
        _ => return Err(bad(ty, format!("expected 1 or 2 arguments (state, tzinfo), found {}", args.len()))),
    };
    let state = bytes_arg(value, state, ty, "the state")?;
    let tz = match tz {
        Some(t) if !matches!(value.get(t), Some(Node::None)) => Some(TzInfo::read(value, t, ty)?),
        _ => None,
    };
    Ok((state, tz))
}

fn write_with_tz(value: &mut Value, name: &str, state: Vec<u8>, tz: Option<&TzInfo>) -> NodeId {
    let state = value.push(Node::Bytes(state));
    let mut args = vec![state];
    if let Some(tz) = tz {
        args.push(tz.write(value));
    }
    push_reduce(value, "datetime", name, args, Vec::new())
}

impl PyObject for Time {
    const PYTHON_TYPE: &'static str = TIME;

    fn read(value: &Value, id: NodeId) -> Result<Time> {
        let c = call(value, id, TIME, |m, n| m == "datetime" && n == "time")?;
        super::no_ops(TIME, c.ops)?;
        let (state, tzinfo) = state_and_tz(value, c.args, TIME)?;
        if state.len() != 6 {
            return Err(bad(TIME, format!("the state has {} bytes, not 6", state.len())));
        }
        Ok(Time { tzinfo, ..Time::from_state(TIME, state, true)? })
    }

    fn write(&self, value: &mut Value) -> NodeId {
        write_with_tz(value, "time", self.state().to_vec(), self.tzinfo.as_ref())
    }
}

impl PyAtom for Time {}

/// A `datetime.datetime`: a date and a time of day, with an optional tzinfo and `fold`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DateTime {
    date: Date,
    time: Time,
}

impl DateTime {
    /// `datetime.datetime` from a date and a time (whose tzinfo and fold it takes).
    pub fn new(date: Date, time: Time) -> DateTime {
        DateTime { date, time }
    }

    /// The date part.
    pub fn date(&self) -> Date {
        self.date
    }

    /// The time part, with the tzinfo and fold.
    pub fn time(&self) -> &Time {
        &self.time
    }

    /// The tzinfo, if any.
    pub fn tzinfo(&self) -> Option<&TzInfo> {
        self.time.tzinfo.as_ref()
    }

    /// `datetime.isoformat()`: `2024-01-02T03:04:05.000006+05:30`.
    pub fn isoformat(&self) -> String {
        format!("{}T{}", self.date.isoformat(), self.time.isoformat())
    }
}

impl fmt::Display for DateTime {
    /// Python's `repr`: `datetime.datetime(2024, 1, 2, 3, 4, 5, 6)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.date;
        write!(f, "datetime.datetime({}, {}, {}, {}", d.year, d.month, d.day, self.time.repr_fields())?;
        self.time.repr_keywords(f)?;
        f.write_str(")")
    }
}

impl PyObject for DateTime {
    const PYTHON_TYPE: &'static str = DATETIME;

    fn read(value: &Value, id: NodeId) -> Result<DateTime> {
        let c = call(value, id, DATETIME, |m, n| m == "datetime" && n == "datetime")?;
        super::no_ops(DATETIME, c.ops)?;
        let (state, tzinfo) = state_and_tz(value, c.args, DATETIME)?;
        let &[hi, lo, m, day, ref rest @ ..] = state else {
            return Err(bad(DATETIME, format!("the state has {} bytes, not 10", state.len())));
        };
        if rest.len() != 6 {
            return Err(bad(DATETIME, format!("the state has {} bytes, not 10", state.len())));
        }
        let (month, fold) = (m & 0x7F, m & 0x80 != 0);
        let year = u16::from_be_bytes([hi, lo]);
        check_date(DATETIME, year, month, day)?;
        let time = Time::from_state(DATETIME, rest, false)?;
        Ok(DateTime { date: Date { year, month, day }, time: Time { fold, tzinfo, ..time } })
    }

    fn write(&self, value: &mut Value) -> NodeId {
        let d = self.date.state();
        let t = self.time.state();
        let month = d[2] | if self.time.fold { 0x80 } else { 0 };
        let state = vec![d[0], d[1], month, d[3], t[0] & 0x7F, t[1], t[2], t[3], t[4], t[5]];
        write_with_tz(value, "datetime", state, self.time.tzinfo.as_ref())
    }
}

impl PyAtom for DateTime {}

/// A `datetime.timedelta`, normalized as Python keeps it: `days` (±999,999,999),
/// `0 <= seconds < 86400`, `0 <= microseconds < 1,000,000`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TimeDelta {
    days: i32,
    seconds: u32,
    microseconds: u32,
}

const MAX_DAYS: i128 = 999_999_999;

impl TimeDelta {
    /// `datetime.timedelta(days, seconds, microseconds)`, normalized as Python does.
    ///
    /// # Errors
    /// [`crate::Error::PyType`] when the total is beyond ±999,999,999 days.
    pub fn new(days: i64, seconds: i64, microseconds: i64) -> Result<TimeDelta> {
        let total = i128::from(days) * 86_400_000_000 + i128::from(seconds) * 1_000_000 + i128::from(microseconds);
        TimeDelta::from_microseconds(total)
    }

    /// A timedelta of this many microseconds.
    ///
    /// # Errors
    /// [`crate::Error::PyType`] when the total is beyond ±999,999,999 days.
    pub fn from_microseconds(total: i128) -> Result<TimeDelta> {
        let days = total.div_euclid(86_400_000_000);
        let rest = total.rem_euclid(86_400_000_000);
        if !(-MAX_DAYS..=MAX_DAYS).contains(&days) {
            return Err(bad(TIMEDELTA, format!("{days} days is out of range ±999999999")));
        }
        Ok(TimeDelta { days: days as i32, seconds: (rest / 1_000_000) as u32, microseconds: (rest % 1_000_000) as u32 })
    }

    /// The days, possibly negative.
    pub fn days(&self) -> i32 {
        self.days
    }

    /// The seconds, 0–86399.
    pub fn seconds(&self) -> u32 {
        self.seconds
    }

    /// The microseconds, 0–999999.
    pub fn microseconds(&self) -> u32 {
        self.microseconds
    }

    /// The whole duration in microseconds.
    pub fn total_microseconds(&self) -> i128 {
        i128::from(self.days) * 86_400_000_000 + i128::from(self.seconds) * 1_000_000 + i128::from(self.microseconds)
    }

    /// `+05:30`, `-00:00:01.5`-style: the UTC offset as `isoformat` writes it.
    fn iso_offset(&self) -> String {
        let total = self.total_microseconds();
        let sign = if total < 0 { '-' } else { '+' };
        let a = total.unsigned_abs();
        let (us, secs) = ((a % 1_000_000) as u32, (a / 1_000_000) as u64);
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        let mut out = format!("{sign}{h:02}:{m:02}");
        if s != 0 || us != 0 {
            out.push_str(&format!(":{s:02}"));
        }
        if us != 0 {
            out.push_str(&format!(".{us:06}"));
        }
        out
    }
}

impl fmt::Display for TimeDelta {
    /// Python's `repr`: `datetime.timedelta(days=-1, seconds=5, microseconds=7)`, the
    /// zero fields left out (`datetime.timedelta(0)` when all are zero).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.days != 0 {
            parts.push(format!("days={}", self.days));
        }
        if self.seconds != 0 {
            parts.push(format!("seconds={}", self.seconds));
        }
        if self.microseconds != 0 {
            parts.push(format!("microseconds={}", self.microseconds));
        }
        if parts.is_empty() {
            parts.push("0".into());
        }
        write!(f, "datetime.timedelta({})", parts.join(", "))
    }
}

impl PyObject for TimeDelta {
    const PYTHON_TYPE: &'static str = TIMEDELTA;

    fn read(value: &Value, id: NodeId) -> Result<TimeDelta> {
        let c = call(value, id, TIMEDELTA, |m, n| m == "datetime" && n == "timedelta")?;
        super::no_ops(TIMEDELTA, c.ops)?;
        let [d, s, us] = c.args else {
            return Err(bad(
                TIMEDELTA,
                format!("expected 3 arguments (days, seconds, microseconds), found {}", c.args.len()),
            ));
        };
        TimeDelta::new(
            i64_arg(value, *d, TIMEDELTA, "days")?,
            i64_arg(value, *s, TIMEDELTA, "seconds")?,
            i64_arg(value, *us, TIMEDELTA, "microseconds")?,
        )
    }

    fn write(&self, value: &mut Value) -> NodeId {
        let args = vec![
            value.push(Node::Int(i64::from(self.days))),
            value.push(Node::Int(i64::from(self.seconds))),
            value.push(Node::Int(i64::from(self.microseconds))),
        ];
        push_reduce(value, "datetime", "timedelta", args, Vec::<ObjectOp>::new())
    }
}

impl PyAtom for TimeDelta {}

/// A `datetime.timezone`: a fixed offset from UTC (strictly between -24 and 24 hours)
/// and an optional name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TimeZone {
    offset: TimeDelta,
    name: Option<String>,
}

impl TimeZone {
    /// `datetime.timezone(offset[, name])`.
    ///
    /// # Errors
    /// [`crate::Error::PyType`] when the offset is not strictly between -24 and 24 hours.
    pub fn new(offset: TimeDelta, name: Option<String>) -> Result<TimeZone> {
        let us = offset.total_microseconds();
        if us.abs() >= 86_400_000_000 {
            return Err(bad(TIMEZONE, format!("offset {offset} is not strictly between -24 and 24 hours")));
        }
        Ok(TimeZone { offset, name })
    }

    /// `datetime.timezone.utc`.
    pub fn utc() -> TimeZone {
        TimeZone { offset: TimeDelta { days: 0, seconds: 0, microseconds: 0 }, name: None }
    }

    /// The offset from UTC.
    pub fn offset(&self) -> TimeDelta {
        self.offset
    }

    /// The name given at construction, if any.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl fmt::Display for TimeZone {
    /// Python's `repr`: `datetime.timezone.utc`, or
    /// `datetime.timezone(datetime.timedelta(seconds=19800), 'IST')`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.name {
            None if self.offset.total_microseconds() == 0 => f.write_str("datetime.timezone.utc"),
            None => write!(f, "datetime.timezone({})", self.offset),
            Some(n) => write!(f, "datetime.timezone({}, {})", self.offset, str_repr(&n.as_str().into())),
        }
    }
}

impl PyObject for TimeZone {
    const PYTHON_TYPE: &'static str = TIMEZONE;

    fn read(value: &Value, id: NodeId) -> Result<TimeZone> {
        let c = call(value, id, TIMEZONE, |m, n| m == "datetime" && n == "timezone")?;
        super::no_ops(TIMEZONE, c.ops)?;
        let (offset, name) = match c.args {
            [o] => (*o, None),
            [o, n] => (*o, Some(str_arg(value, *n, TIMEZONE, "the name")?.to_owned())),
            _ => {
                return Err(bad(TIMEZONE, format!("expected 1 or 2 arguments (offset, name), found {}", c.args.len())));
            }
        };
        let offset = TimeDelta::read(value, offset)
            .map_err(|e| bad(TIMEZONE, format!("the offset is not a valid timedelta ({e})")))?;
        TimeZone::new(offset, name)
    }

    fn write(&self, value: &mut Value) -> NodeId {
        let mut args = vec![self.offset.write(value)];
        if let Some(n) = &self.name {
            args.push(value.push(Node::Str(n.as_str().into())));
        }
        push_reduce(value, "datetime", "timezone", args, Vec::new())
    }
}

impl PyAtom for TimeZone {}
