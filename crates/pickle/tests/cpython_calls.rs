//! Calls the unpickler makes, with CPython as the oracle: the built-in types applied
//! through `REDUCE`, `INST`, `OBJ` and `NEWOBJ` (`INST builtins list`, `set([1, 1.0])`,
//! `NEWOBJ tuple ([1],)`, ...), `_codecs.encode` with any UTF-8, Latin-1 or ASCII codec
//! name, and the calls CPython refuses (`REDUCE` of an int, `NEWOBJ` of a non-class).
//!
//! Every combination of type, opcode and argument below is decoded here and loaded by
//! CPython's `pickle.loads`. Where we make a native value or refuse, CPython must do the
//! same: an equal value (same type, content, order) or an exception. Where we keep the
//! call as an object (a combination the codec does not model, such as `int('5')`), the
//! test lists it, and the list must be the known one, so that a change shows.

mod common;

use common::{OracleCase, cpython_compare};
use pickleshelf_pickle::{self as pickle, Node};

const TYPES: [&str; 11] =
    ["list", "tuple", "dict", "set", "frozenset", "str", "bytes", "bytearray", "int", "float", "bool"];

/// Arguments: (name, the opcodes that push them).
const ARGS: [(&str, &[u8]); 14] = [
    ("", b""),
    ("[1, 2]", b"]q\x00(K\x01K\x02e"),
    ("(1, 1.0)", b"K\x01G?\xf0\x00\x00\x00\x00\x00\x00\x86"),
    ("{1: 2}", b"}K\x01K\x02s"),
    ("[(1, 2), (1.0, 3)]", b"](K\x01K\x02\x86G?\xf0\x00\x00\x00\x00\x00\x00K\x03\x86e"),
    ("'ab'", b"X\x02\x00\x00\x00ab"),
    ("b'ab'", b"C\x02ab"),
    ("5", b"K\x05"),
    ("2.5", b"G@\x04\x00\x00\x00\x00\x00\x00"),
    ("True", b"\x88"),
    ("None", b"N"),
    ("'é', 'utf-8'", b"X\x02\x00\x00\x00\xc3\xa9X\x05\x00\x00\x00utf-8"),
    // CPython iterates a set in its hash table's order ({3, 1, 2} as 1, 2, 3).
    ("{3, 1, 2}", b"\x8f(K\x03K\x01K\x02\x90"),
    // A key set twice: `list(d)` has it once.
    ("{1: 2, 3: 4, 1.0: 5}", b"}(K\x01K\x02K\x03K\x04G?\xf0\x00\x00\x00\x00\x00\x00K\x05u"),
];

/// How the call is written.
#[derive(Clone, Copy, Debug)]
enum Via {
    Reduce,
    Inst,
    Obj,
    NewObj,
}

fn assemble(via: Via, ty: &str, args: &[u8]) -> Vec<u8> {
    let mut p = b"\x80\x03".to_vec();
    let global = |p: &mut Vec<u8>| {
        p.extend_from_slice(b"cbuiltins\n");
        p.extend_from_slice(ty.as_bytes());
        p.push(b'\n');
    };
    match via {
        Via::Reduce => {
            global(&mut p);
            p.push(b'(');
            p.extend_from_slice(args);
            p.extend_from_slice(b"tR");
        }
        Via::Inst => {
            p.push(b'(');
            p.extend_from_slice(args);
            p.extend_from_slice(b"ibuiltins\n");
            p.extend_from_slice(ty.as_bytes());
            p.push(b'\n');
        }
        Via::Obj => {
            p.push(b'(');
            global(&mut p);
            p.extend_from_slice(args);
            p.push(b'o');
        }
        Via::NewObj => {
            global(&mut p);
            p.push(b'(');
            p.extend_from_slice(args);
            p.extend_from_slice(b"t\x81");
        }
    }
    p.push(b'.');
    p
}

/// Fixed cases: (name, pickle).
fn fixed() -> Vec<(String, Vec<u8>)> {
    let codecs = |text: &[u8], args: &[&[u8]]| {
        let mut p = b"\x80\x03c_codecs\nencode\n(X".to_vec();
        p.extend((text.len() as u32).to_le_bytes());
        p.extend_from_slice(text);
        for a in args {
            p.push(b'X');
            p.extend((a.len() as u32).to_le_bytes());
            p.extend_from_slice(a);
        }
        p.extend_from_slice(b"tR.");
        p
    };
    let mut out: Vec<(String, Vec<u8>)> = vec![
        // Protocol 0/1 INST and OBJ, with the Python 2 module name.
        ("INST __builtin__ list, then APPEND".into(), b"(i__builtin__\nlist\np0\nI1\na.".to_vec()),
        ("INST list, SETITEM on INST dict".into(), b"(ibuiltins\ndict\np0\nI1\nI2\ns.".to_vec()),
        ("OBJ tuple of a list".into(), b"(c__builtin__\ntuple\n(lp0\nI1\naI2\nao.".to_vec()),
        ("list of INST sets".into(), b"(lp0\n(ibuiltins\nset\na(ibuiltins\nfrozenset\na.".to_vec()),
        ("tuple(t) is t".into(), b"\x80\x02]q\x00(K\x01K\x02\x86q\x01cbuiltins\ntuple\nh\x01\x85Rh\x01e.".to_vec()),
        ("str(s) is s".into(), b"\x80\x02](X\x02\x00\x00\x00abq\x00cbuiltins\nstr\nh\x00\x85Rh\x00e.".to_vec()),
        // _codecs.encode: the default codec, names in any spelling, error handlers.
        ("encode('é')".into(), codecs("é".as_bytes(), &[])),
        ("encode('é', 'UTF8')".into(), codecs("é".as_bytes(), &[b"UTF8"])),
        ("encode('é', 'utf 8')".into(), codecs("é".as_bytes(), &[b"utf 8"])),
        ("encode('é', 'u8')".into(), codecs("é".as_bytes(), &[b"u8"])),
        ("encode('é', 'latin-1')".into(), codecs("é".as_bytes(), &[b"latin-1"])),
        ("encode('é', 'ISO_8859_1')".into(), codecs("é".as_bytes(), &[b"ISO_8859_1"])),
        ("encode('é', 'cp819')".into(), codecs("é".as_bytes(), &[b"cp819"])),
        ("encode('abc', 'US-ASCII')".into(), codecs(b"abc", &[b"US-ASCII"])),
        ("encode('abc', 'ascii', 'strict')".into(), codecs(b"abc", &[b"ascii", b"strict"])),
        ("encode('€', 'utf-8', 'strict')".into(), codecs("€".as_bytes(), &[b"utf-8", b"strict"])),
        ("encode(surrogate, 'utf-8', 'surrogatepass')".into(), codecs(b"a\xed\xa0\x80", &[b"utf-8", b"surrogatepass"])),
        (
            "bytearray('é', 'latin1')".into(),
            b"\x80\x03cbuiltins\nbytearray\nX\x02\x00\x00\x00\xc3\xa9X\x06\x00\x00\x00latin1\x86R.".to_vec(),
        ),
        // Refused, as CPython refuses them.
        ("REDUCE of an int".into(), b"\x80\x02K\x01)R.".to_vec()),
        ("REDUCE of None".into(), b"\x80\x02N)R.".to_vec()),
        ("REDUCE of a str".into(), b"\x80\x02X\x01\x00\x00\x00f)R.".to_vec()),
        ("REDUCE of a list".into(), b"\x80\x02])R.".to_vec()),
        ("NEWOBJ of an int".into(), b"\x80\x02K\x01)\x81.".to_vec()),
        ("NEWOBJ of None".into(), b"\x80\x02N)\x81.".to_vec()),
        ("NEWOBJ of a tuple".into(), b"\x80\x02))\x81.".to_vec()),
        ("NEWOBJ_EX of an int".into(), b"\x80\x04K\x01)}\x92.".to_vec()),
        ("OBJ of an int".into(), b"\x80\x02(K\x01K\x02o.".to_vec()),
        ("OBJ of a str".into(), b"\x80\x02(X\x01\x00\x00\x00fo.".to_vec()),
        ("set of a list of lists".into(), b"\x80\x03cbuiltins\nset\n]]a\x85R.".to_vec()),
        ("dict of pairs with a list key".into(), b"\x80\x03cbuiltins\ndict\n]]K\x01\x86a\x85R.".to_vec()),
    ];
    for via in [Via::Reduce, Via::Inst, Via::Obj, Via::NewObj] {
        for ty in TYPES {
            for (name, args) in ARGS {
                out.push((format!("{via:?} {ty}({name})"), assemble(via, ty, args)));
            }
        }
    }
    out
}

/// How many combinations are native, refused, and kept as objects. Kept are the calls
/// whose result depends on more than the argument's type and kind (`str(5)`, `int(2.5)`,
/// `list('ab')`, `bytes(5)`) and the ones CPython refuses with a `TypeError` other than
/// the refusals above (`list(5)`, `dict([1, 2])`): they stay data, as before.
const COUNTS: (usize, usize, usize) = (286, 12, 348);

#[test]
fn calls_of_builtin_types_match_cpython() {
    let mut oracle = Vec::new();
    let mut kept = Vec::new();
    let (mut native, mut refused) = (0, 0);
    let mut kept_cases = Vec::new();
    for (name, bytes) in fixed() {
        let decoded = pickle::decode(&bytes);
        assert_eq!(pickle::check(&bytes).is_ok(), decoded.is_ok(), "{name}: check and decode disagree");
        let ours = match &decoded {
            Ok(v) if matches!(v.root_node(), Node::Object(_)) => {
                kept.push(name.clone());
                // Asked as if we refused: CPython agrees when it raises.
                kept_cases.push(OracleCase { name, pickle: bytes, ours: Err("kept as an object".into()) });
                continue;
            }
            Ok(v) => {
                native += 1;
                Ok(pickle::to_tagged_json(v))
            }
            Err(e) => {
                refused += 1;
                Err(e.to_string())
            }
        };
        oracle.push(OracleCase { name, pickle: bytes, ours });
    }
    let Some(mismatches) = cpython_compare(&oracle) else { return };
    let builds = cpython_compare(&kept_cases).map_or(0, |m| m.len());
    eprintln!(
        "{} calls: {native} native, {refused} refused, {} kept as objects (CPython raises on {} of those, \
         builds a value from {builds}); CPython agreed on {} of the {} native or refused",
        native + refused + kept.len(),
        kept.len(),
        kept.len() - builds,
        oracle.len() - mismatches.len(),
        oracle.len()
    );
    assert!(
        mismatches.is_empty(),
        "{} of {} differ from CPython:\n{}",
        mismatches.len(),
        oracle.len(),
        mismatches.join("\n")
    );
    assert_eq!((native, refused, kept.len()), COUNTS, "the calls made native changed; kept: {kept:#?}");
}

#[test]
fn refusals_name_the_opcode_and_offset() {
    let cases: &[(&[u8], &str)] = &[
        (b"\x80\x02K\x01)R.", "pickle decode failed at byte 5: REDUCE: 'int' object is not callable"),
        (b"\x80\x02N)\x81.", "pickle decode failed at byte 4: NEWOBJ: class argument must be a type, not NoneType"),
        (b"\x80\x04K\x01)}\x92.", "pickle decode failed at byte 6: NEWOBJ_EX: class argument must be a type, not int"),
        (b"\x80\x02(K\x01K\x02o.", "pickle decode failed at byte 7: OBJ: 'int' object is not callable"),
    ];
    for &(bytes, message) in cases {
        assert_eq!(pickle::decode(bytes).err().map(|e| e.to_string()).as_deref(), Some(message), "{bytes:?}");
    }
}
