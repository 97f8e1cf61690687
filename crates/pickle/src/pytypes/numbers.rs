//! `decimal.Decimal`, `fractions.Fraction`, `complex` and `uuid.UUID`.
//!
//! Invariant: a [`Decimal`] holds text Python's `Decimal()` accepts, a [`Fraction`] a
//! non-zero denominator, a [`Uuid`] any 128-bit value; readers check this.
//!
//! CPython writes `Decimal(str(d))`, `Fraction(numerator, denominator)` (3.11 on;
//! earlier versions `Fraction(str(f))`, which is read too), `complex(real, imag)`, and a
//! `UUID` as `UUID.__new__(UUID)` (or `copyreg._reconstructor` at protocols 0–1) with the
//! state `{'int': N}` (plus `'is_safe'` when known).

use std::fmt;

use super::{PyAtom, PyObject, bad, call, describe, int_arg, push_global, push_int, push_reduce, str_arg};
use crate::Result;
use crate::int::{BigInt, Int};
use crate::repr::float_repr;
use crate::value::{Construct, Node, NodeId, Object, ObjectOp, Value};

const DECIMAL: &str = "decimal.Decimal";
const FRACTION: &str = "fractions.Fraction";
const COMPLEX: &str = "complex";
const UUID: &str = "uuid.UUID";

/// A `decimal.Decimal`, kept as the text Python writes (`str(d)`), so nothing is lost:
/// `'1.50'`, `'-0'`, `'1E+3'`, `'NaN'`, `'sNaN'`, `'-Infinity'`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Decimal {
    text: String,
}

impl Decimal {
    /// A decimal from its text, checked against the grammar of Python's `Decimal(str)`
    /// (underscores and surrounding blanks, which `str(d)` never writes, are refused).
    ///
    /// # Errors
    /// [`crate::Error::PyType`] when the text is not a decimal number.
    pub fn new(text: impl Into<String>) -> Result<Decimal> {
        let text = text.into();
        if !valid_decimal(&text) {
            return Err(bad(DECIMAL, format!("{text:?} is not a decimal number")));
        }
        Ok(Decimal { text })
    }

    /// The text, as `str(d)` gives it.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

fn valid_decimal(text: &str) -> bool {
    let body = text.strip_prefix(['+', '-']).unwrap_or(text);
    let lower = body.to_ascii_lowercase();
    if lower == "inf" || lower == "infinity" {
        return true;
    }
    for nan in ["nan", "snan"] {
        if let Some(payload) = lower.strip_prefix(nan) {
            return payload.bytes().all(|b| b.is_ascii_digit());
        }
    }
    let (mantissa, exponent) = match body.find(['e', 'E']) {
        Some(i) => (&body[..i], Some(&body[i + 1..])),
        None => (body, None),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = digits(int) && digits(frac) && !(int.is_empty() && frac.is_empty());
    let exponent_ok = match exponent {
        None => true,
        Some(e) => {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            !e.is_empty() && digits(e)
        }
    };
    mantissa_ok && exponent_ok
}

impl fmt::Display for Decimal {
    /// Python's `repr`: `Decimal('1.5')`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Decimal('{}')", self.text)
    }
}

impl PyObject for Decimal {
    const PYTHON_TYPE: &'static str = DECIMAL;

    fn read(value: &Value, id: NodeId) -> Result<Decimal> {
        let c = call(value, id, DECIMAL, |m, n| {
            (m == "decimal" || m == "_decimal" || m == "_pydecimal") && n == "Decimal"
        })?;
        super::no_ops(DECIMAL, c.ops)?;
        let [text] = c.args else {
            return Err(bad(DECIMAL, format!("expected 1 argument (the text), found {}", c.args.len())));
        };
        Decimal::new(str_arg(value, *text, DECIMAL, "the argument")?)
    }

    fn write(&self, value: &mut Value) -> NodeId {
        let text = value.push(Node::Str(self.text.as_str().into()));
        push_reduce(value, "decimal", "Decimal", vec![text], Vec::new())
    }
}

impl PyAtom for Decimal {}

/// A `fractions.Fraction`: numerator and denominator (non-zero), in lowest terms with a
/// positive denominator when both fit in `i64` (as Python normalizes them); larger
/// ones are kept as the pickle holds them (CPython writes them normalized).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Fraction {
    numerator: Int,
    denominator: Int,
}

fn gcd(mut a: u128, mut b: u128) -> u128 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Fraction {
    /// `Fraction(numerator, denominator)`.
    ///
    /// # Errors
    /// [`crate::Error::PyType`] when the denominator is zero.
    pub fn new(numerator: Int, denominator: Int) -> Result<Fraction> {
        if denominator == Int::Small(0) {
            return Err(bad(FRACTION, "the denominator is zero"));
        }
        if let (Int::Small(n), Int::Small(d)) = (&numerator, &denominator) {
            let (mut n, mut d) = (i128::from(*n), i128::from(*d));
            if d < 0 {
                (n, d) = (-n, -d);
            }
            let g = gcd(n.unsigned_abs(), d.unsigned_abs()) as i128;
            if g > 1 {
                (n, d) = (n / g, d / g);
            }
            if let (Ok(n), Ok(d)) = (i64::try_from(n), i64::try_from(d)) {
                return Ok(Fraction { numerator: Int::Small(n), denominator: Int::Small(d) });
            }
        }
        Ok(Fraction { numerator, denominator })
    }

    /// The numerator.
    pub fn numerator(&self) -> &Int {
        &self.numerator
    }

    /// The denominator.
    pub fn denominator(&self) -> &Int {
        &self.denominator
    }

    /// Python's `str`: `1/3`, or `3` when the denominator is 1.
    pub fn str(&self) -> String {
        if self.denominator == Int::Small(1) {
            self.numerator.to_decimal()
        } else {
            format!("{}/{}", self.numerator.to_decimal(), self.denominator.to_decimal())
        }
    }
}

impl fmt::Display for Fraction {
    /// Python's `repr`: `Fraction(1, 3)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fraction({}, {})", self.numerator.to_decimal(), self.denominator.to_decimal())
    }
}

impl PyObject for Fraction {
    const PYTHON_TYPE: &'static str = FRACTION;

    fn read(value: &Value, id: NodeId) -> Result<Fraction> {
        let c = call(value, id, FRACTION, |m, n| m == "fractions" && n == "Fraction")?;
        super::no_ops(FRACTION, c.ops)?;
        match c.args {
            [n, d] => Fraction::new(
                int_arg(value, *n, FRACTION, "the numerator")?,
                int_arg(value, *d, FRACTION, "the denominator")?,
            ),
            [text] => {
                let text = str_arg(value, *text, FRACTION, "the argument")?;
                let (n, d) = text.split_once('/').unwrap_or((text, "1"));
                let parse = |s: &str, what: &str| {
                    Int::parse_decimal(s, 4300)
                        .filter(|_| !s.is_empty() && s.trim() == s)
                        .ok_or_else(|| bad(FRACTION, format!("{what} in {text:?} is not an integer")))
                };
                Fraction::new(parse(n, "the numerator")?, parse(d, "the denominator")?)
            }
            _ => Err(bad(FRACTION, format!("expected 1 or 2 arguments, found {}", c.args.len()))),
        }
    }

    fn write(&self, value: &mut Value) -> NodeId {
        let n = push_int(value, &self.numerator);
        let d = push_int(value, &self.denominator);
        push_reduce(value, "fractions", "Fraction", vec![n, d], Vec::new())
    }
}

impl PyAtom for Fraction {}

/// A `complex`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Complex {
    /// The real part.
    pub re: f64,
    /// The imaginary part.
    pub im: f64,
}

/// `repr` of a float as `complex.__repr__` writes its parts: without a trailing `.0`.
fn part_repr(x: f64) -> String {
    let r = float_repr(x);
    r.strip_suffix(".0").map(str::to_owned).unwrap_or(r)
}

impl fmt::Display for Complex {
    /// Python's `repr`: `(1+2j)`, `2j`, `(-0-1j)`, `(nan+infj)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.re == 0.0 && self.re.is_sign_positive() {
            return write!(f, "{}j", part_repr(self.im));
        }
        let im = part_repr(self.im);
        let sign = if im.starts_with('-') { "" } else { "+" };
        write!(f, "({}{sign}{im}j)", part_repr(self.re))
    }
}

impl PyObject for Complex {
    const PYTHON_TYPE: &'static str = COMPLEX;

    fn read(value: &Value, id: NodeId) -> Result<Complex> {
        let c = call(value, id, COMPLEX, |m, n| m == "builtins" && n == "complex")?;
        super::no_ops(COMPLEX, c.ops)?;
        let part = |id: Option<&NodeId>, what: &str| match id.map(|&i| (i, value.get(i))) {
            None => Ok(0.0),
            Some((_, Some(Node::Float(x)))) => Ok(*x),
            Some((_, Some(Node::Int(i)))) => Ok(*i as f64),
            Some((i, _)) => Err(bad(COMPLEX, format!("the {what} part is {}, not float", describe(value, i)))),
        };
        if c.args.len() > 2 {
            return Err(bad(COMPLEX, format!("expected 2 arguments (real, imag), found {}", c.args.len())));
        }
        Ok(Complex { re: part(c.args.first(), "real")?, im: part(c.args.get(1), "imaginary")? })
    }

    fn write(&self, value: &mut Value) -> NodeId {
        let re = value.push(Node::Float(self.re));
        let im = value.push(Node::Float(self.im));
        push_reduce(value, "builtins", "complex", vec![re, im], Vec::new())
    }
}

impl PyAtom for Complex {}

/// A `uuid.UUID`: its 128-bit integer (`UUID.int`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Uuid(pub u128);

impl Uuid {
    /// `str(u)`: `12345678-1234-5678-1234-567812345678`.
    pub fn hyphenated(&self) -> String {
        let h = format!("{:032x}", self.0);
        format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
    }
}

impl fmt::Display for Uuid {
    /// Python's `repr`: `UUID('12345678-1234-5678-1234-567812345678')`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UUID('{}')", self.hyphenated())
    }
}

/// An int node as `u128`, if it is one in range.
fn as_u128(i: &Int) -> Option<u128> {
    match i {
        Int::Small(v) => u128::try_from(*v).ok(),
        Int::Big(b) => big_u128(b),
    }
}

fn big_u128(b: &BigInt) -> Option<u128> {
    if b.is_negative() || b.magnitude().len() > 4 {
        return None;
    }
    Some(b.magnitude().iter().rev().fold(0u128, |acc, &limb| (acc << 32) | u128::from(limb)))
}

impl PyObject for Uuid {
    const PYTHON_TYPE: &'static str = UUID;

    fn read(value: &Value, id: NodeId) -> Result<Uuid> {
        let wrong = || bad(UUID, format!("expected a uuid.UUID object, found {}", describe(value, id)));
        if value.object_type(id) != Some(("uuid", "UUID")) {
            return Err(wrong());
        }
        let Some(Node::Object(o)) = value.get(id) else { return Err(wrong()) };
        match &o.construct {
            Construct::NewObj { args, .. } if matches!(value.get(*args), Some(Node::Tuple(a)) if a.is_empty()) => {}
            Construct::Reduce { callable, .. } if matches!(super::global_at(value, *callable), Some(g) if g.name == "_reconstructor") =>
                {}
            _ => return Err(bad(UUID, "expected UUID.__new__(UUID) with the state set after")),
        }
        let [ObjectOp::Build(state)] = o.ops.as_slice() else {
            return Err(bad(UUID, "expected one state dict after the call"));
        };
        let Some(int) = value.dict_get(*state, "int") else {
            return Err(bad(UUID, format!("the state is {} without an 'int' key", describe(value, *state))));
        };
        let n = int_arg(value, int, UUID, "'int'")?;
        as_u128(&n).map(Uuid).ok_or_else(|| bad(UUID, format!("'int' {} is not in 0..2**128", n.to_decimal())))
    }

    fn write(&self, value: &mut Value) -> NodeId {
        let cls = push_global(value, "uuid", "UUID");
        let args = value.push(Node::Tuple(Vec::new()));
        let key = value.push(Node::Str("int".into()));
        let n = push_int(value, &u128_int(self.0));
        let state = value.push(Node::Dict(vec![(key, n)]));
        value.push(Node::Object(Box::new(Object {
            construct: Construct::NewObj { cls, args },
            ops: vec![ObjectOp::Build(state)],
        })))
    }
}

impl PyAtom for Uuid {}

/// A `u128` as an [`Int`].
pub(crate) fn u128_int(v: u128) -> Int {
    let limbs = (0..4).map(|i| (v >> (32 * i)) as u32).collect();
    BigInt::from_sign_magnitude(false, limbs)
}
