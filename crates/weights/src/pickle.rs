//! A data-only pickle interpreter (protocols 2–5).
//!
//! It understands the opcodes `torch.save` emits and builds a [`Value`] tree. `GLOBAL` only
//! records a name and `REDUCE` hands the name and arguments to a [`Resolver`], which decides
//! what data to build; nothing named in the file is ever imported or called. Any input,
//! however corrupt, yields a value or an error — never a panic.

use crate::{HostTensor, Result, WeightsError};

/// A decoded pickle value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    /// Insertion-ordered key/value pairs (dict and OrderedDict).
    Dict(Vec<(Value, Value)>),
    /// A `module.name` reference recorded by `GLOBAL`; never resolved to code.
    Global(String),
    /// The result of calling a global the resolver does not know: kept as data.
    Object {
        class: String,
        args: Box<Value>,
    },
    /// A tensor storage reference produced by the resolver (PyTorch persistent ids).
    Storage {
        key: String,
        dtype: String,
    },
    Tensor(HostTensor),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(i64::from(*b)),
            _ => None,
        }
    }

    /// Looks up a string key in a dict value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

/// Decides what `REDUCE` and `BINPERSID` produce.
pub trait Resolver {
    fn persistent_load(&mut self, pid: Value) -> Result<Value>;
    fn reduce(&mut self, global: &str, args: Value) -> Result<Value>;
}

fn err(msg: impl Into<String>) -> WeightsError {
    WeightsError::Pickle(msg.into())
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| err("unexpected end of pickle data"))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn line(&mut self) -> Result<&'a str> {
        let rest = &self.data[self.pos..];
        let n = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| err("unterminated text field"))?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| err("text field is not UTF-8"))?;
        self.pos += n + 1;
        Ok(s)
    }
    fn string(&mut self, n: usize) -> Result<String> {
        let b = self.take(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| err("string is not UTF-8"))
    }
    fn len(&mut self, n: u64) -> Result<usize> {
        usize::try_from(n).map_err(|_| err("length does not fit in memory"))
    }
}

/// Interprets a pickle stream and returns its top-level value.
pub fn load(data: &[u8], resolver: &mut dyn Resolver) -> Result<Value> {
    let mut r = Reader { data, pos: 0 };
    let mut stack: Vec<Value> = Vec::new();
    let mut marks: Vec<usize> = Vec::new();
    let mut memo: std::collections::HashMap<u64, Value> = std::collections::HashMap::new();

    fn pop(stack: &mut Vec<Value>) -> Result<Value> {
        stack.pop().ok_or_else(|| err("stack underflow"))
    }
    fn pop_mark(stack: &mut Vec<Value>, marks: &mut Vec<usize>) -> Result<Vec<Value>> {
        let m = marks.pop().ok_or_else(|| err("MARK missing"))?;
        if m > stack.len() {
            return Err(err("MARK beyond stack"));
        }
        Ok(stack.split_off(m))
    }
    fn top(stack: &mut [Value]) -> Result<&mut Value> {
        stack.last_mut().ok_or_else(|| err("stack underflow"))
    }
    fn set_items(target: &mut Value, items: Vec<Value>) -> Result<()> {
        if !items.len().is_multiple_of(2) {
            return Err(err("odd number of items for SETITEMS"));
        }
        let Value::Dict(d) = target else {
            // Items for an object we only keep as data (e.g. an unknown class): drop them.
            return Ok(());
        };
        let mut it = items.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            if let Some(slot) = d.iter_mut().find(|(ek, _)| *ek == k) {
                slot.1 = v;
            } else {
                d.push((k, v));
            }
        }
        Ok(())
    }
    fn append(target: &mut Value, items: Vec<Value>) -> Result<()> {
        match target {
            Value::List(l) => {
                l.extend(items);
                Ok(())
            }
            Value::Object { .. } => Ok(()),
            _ => Err(err("APPEND to a non-list")),
        }
    }

    loop {
        let op = r.u8()?;
        match op {
            0x80 => {
                let proto = r.u8()?;
                if proto > 5 {
                    return Err(err(format!("unsupported pickle protocol {proto}")));
                }
            }
            0x95 => {
                r.u64()?; // FRAME: length hint only
            }
            b'.' => return pop(&mut stack),
            b'(' => marks.push(stack.len()),
            b'0' => {
                pop(&mut stack)?;
            }
            b'1' => {
                pop_mark(&mut stack, &mut marks)?;
            }
            b'2' => {
                let v = top(&mut stack)?.clone();
                stack.push(v);
            }
            b'N' => stack.push(Value::None),
            0x88 => stack.push(Value::Bool(true)),
            0x89 => stack.push(Value::Bool(false)),
            b'J' => stack.push(Value::Int(i64::from(r.u32()? as i32))),
            b'K' => stack.push(Value::Int(i64::from(r.u8()?))),
            b'M' => stack.push(Value::Int(i64::from(r.u16()?))),
            0x8a | 0x8b => {
                let n = if op == 0x8a {
                    usize::from(r.u8()?)
                } else {
                    let n = u64::from(r.u32()?);
                    r.len(n)?
                };
                let b = r.take(n)?;
                if n > 8 {
                    return Err(err("integer wider than 64 bits"));
                }
                let mut v: i64 = 0;
                for (i, &byte) in b.iter().enumerate() {
                    v |= i64::from(byte) << (8 * i);
                }
                // Sign-extend from the top byte (two's complement, little endian).
                if n > 0 && n < 8 && b[n - 1] & 0x80 != 0 {
                    v |= -1i64 << (8 * n);
                }
                stack.push(Value::Int(v));
            }
            b'I' => {
                let s = r.line()?;
                let v = match s {
                    "01" => Value::Bool(true),
                    "00" => Value::Bool(false),
                    _ => Value::Int(s.parse().map_err(|_| err("bad INT"))?),
                };
                stack.push(v);
            }
            b'G' => {
                let b = r.take(8)?;
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                stack.push(Value::Float(f64::from_be_bytes(a)));
            }
            b'X' => {
                let n = u64::from(r.u32()?);
                let n = r.len(n)?;
                stack.push(Value::Str(r.string(n)?));
            }
            0x8c => {
                let n = usize::from(r.u8()?);
                stack.push(Value::Str(r.string(n)?));
            }
            0x8d => {
                let n = r.u64()?;
                let n = r.len(n)?;
                stack.push(Value::Str(r.string(n)?));
            }
            b'C' => {
                let n = usize::from(r.u8()?);
                stack.push(Value::Bytes(r.take(n)?.to_vec()));
            }
            b'B' => {
                let n = u64::from(r.u32()?);
                let n = r.len(n)?;
                stack.push(Value::Bytes(r.take(n)?.to_vec()));
            }
            0x8e => {
                let n = r.u64()?;
                let n = r.len(n)?;
                stack.push(Value::Bytes(r.take(n)?.to_vec()));
            }
            b')' => stack.push(Value::Tuple(Vec::new())),
            b't' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                stack.push(Value::Tuple(items));
            }
            0x85..=0x87 => {
                let n = usize::from(op - 0x84);
                if stack.len() < n {
                    return Err(err("stack underflow"));
                }
                let items = stack.split_off(stack.len() - n);
                stack.push(Value::Tuple(items));
            }
            b']' => stack.push(Value::List(Vec::new())),
            b'l' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                stack.push(Value::List(items));
            }
            b'}' => stack.push(Value::Dict(Vec::new())),
            b'd' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                let mut d = Value::Dict(Vec::new());
                set_items(&mut d, items)?;
                stack.push(d);
            }
            b'a' => {
                let v = pop(&mut stack)?;
                append(top(&mut stack)?, vec![v])?;
            }
            b'e' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                append(top(&mut stack)?, items)?;
            }
            b's' => {
                let v = pop(&mut stack)?;
                let k = pop(&mut stack)?;
                set_items(top(&mut stack)?, vec![k, v])?;
            }
            b'u' => {
                let items = pop_mark(&mut stack, &mut marks)?;
                set_items(top(&mut stack)?, items)?;
            }
            0x8f => stack.push(Value::List(Vec::new())), // EMPTY_SET: kept as a list
            0x90 => {
                let items = pop_mark(&mut stack, &mut marks)?;
                append(top(&mut stack)?, items)?;
            }
            0x91 => {
                let items = pop_mark(&mut stack, &mut marks)?;
                stack.push(Value::List(items));
            }
            b'q' => {
                let i = u64::from(r.u8()?);
                memo.insert(i, top(&mut stack)?.clone());
            }
            b'r' => {
                let i = u64::from(r.u32()?);
                memo.insert(i, top(&mut stack)?.clone());
            }
            b'p' => {
                let i: u64 = r.line()?.parse().map_err(|_| err("bad PUT index"))?;
                memo.insert(i, top(&mut stack)?.clone());
            }
            0x94 => {
                let i = memo.len() as u64;
                memo.insert(i, top(&mut stack)?.clone());
            }
            b'h' | b'j' | b'g' => {
                let i = match op {
                    b'h' => u64::from(r.u8()?),
                    b'j' => u64::from(r.u32()?),
                    _ => r.line()?.parse().map_err(|_| err("bad GET index"))?,
                };
                let v = memo
                    .get(&i)
                    .ok_or_else(|| err(format!("memo entry {i} missing")))?
                    .clone();
                stack.push(v);
            }
            b'c' => {
                let module = r.line()?.to_string();
                let name = r.line()?;
                stack.push(Value::Global(format!("{module}.{name}")));
            }
            0x93 => {
                let name = pop(&mut stack)?;
                let module = pop(&mut stack)?;
                match (module, name) {
                    (Value::Str(m), Value::Str(n)) => stack.push(Value::Global(format!("{m}.{n}"))),
                    _ => return Err(err("STACK_GLOBAL needs two strings")),
                }
            }
            b'R' | 0x81 => {
                let args = pop(&mut stack)?;
                let callable = pop(&mut stack)?;
                let Value::Global(name) = callable else {
                    return Err(err("REDUCE of something that is not a global name"));
                };
                stack.push(resolver.reduce(&name, args)?);
            }
            b'b' => {
                // BUILD sets object state; we keep only data, so the state is dropped.
                pop(&mut stack)?;
                top(&mut stack)?;
            }
            b'Q' => {
                let pid = pop(&mut stack)?;
                stack.push(resolver.persistent_load(pid)?);
            }
            other => return Err(err(format!("unsupported pickle opcode 0x{other:02x}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoTorch;
    impl Resolver for NoTorch {
        fn persistent_load(&mut self, _pid: Value) -> Result<Value> {
            Err(err("no storages here"))
        }
        fn reduce(&mut self, global: &str, args: Value) -> Result<Value> {
            Ok(Value::Object {
                class: global.to_string(),
                args: Box::new(args),
            })
        }
    }

    #[test]
    fn decodes_a_protocol_2_dict() {
        // pickle.dumps({'a': 1, 'b': [1.5, None, True], 'c': (-2, 'x')}, protocol=2)
        let data = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x01\x00\x00\x00bq\x02]q\x03(G?\xf8\x00\x00\x00\x00\x00\x00N\x88eX\x01\x00\x00\x00cq\x04J\xfe\xff\xff\xffX\x01\x00\x00\x00xq\x05\x86q\x06u.";
        let v = load(data, &mut NoTorch).expect("valid pickle");
        assert_eq!(v.get("a"), Some(&Value::Int(1)));
        assert_eq!(
            v.get("b"),
            Some(&Value::List(vec![
                Value::Float(1.5),
                Value::None,
                Value::Bool(true)
            ]))
        );
        assert_eq!(
            v.get("c"),
            Some(&Value::Tuple(vec![Value::Int(-2), Value::Str("x".into())]))
        );
    }

    #[test]
    fn globals_are_recorded_not_called() {
        // pickle.dumps(os.system, protocol=2) followed by a REDUCE with ('echo hi',)
        let data = b"\x80\x02cposix\nsystem\nq\x00X\x07\x00\x00\x00echo hiq\x01\x85q\x02Rq\x03.";
        let v = load(data, &mut NoTorch).expect("data only");
        assert_eq!(
            v,
            Value::Object {
                class: "posix.system".into(),
                args: Box::new(Value::Tuple(vec![Value::Str("echo hi".into())]))
            }
        );
    }

    #[test]
    fn long1_is_sign_extended() {
        let data = b"\x80\x02\x8a\x02\x00\xff.";
        assert_eq!(load(data, &mut NoTorch).ok(), Some(Value::Int(-256)));
        let data = b"\x80\x02\x8a\x01\x7f.";
        assert_eq!(load(data, &mut NoTorch).ok(), Some(Value::Int(127)));
    }

    #[test]
    fn truncations_and_garbage_are_errors_not_panics() {
        let data: &[u8] = b"\x80\x02}q\x00(X\x01\x00\x00\x00aq\x01K\x01X\x01\x00\x00\x00bq\x02]q\x03(G?\xf8\x00\x00\x00\x00\x00\x00N\x88eu.";
        for n in 0..data.len() {
            let e = load(&data[..n], &mut NoTorch).expect_err("a prefix is incomplete");
            assert!(
                e.to_string().contains("unexpected end of pickle data"),
                "prefix {n}: {e}"
            );
        }
        let mut seed = 7u64;
        for _ in 0..2000 {
            let len = (seed % 64) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                    (seed >> 33) as u8
                })
                .collect();
            let _ = load(&bytes, &mut NoTorch);
        }
    }
}
