//! A small, safe unpickler for PyTorch checkpoints.
//!
//! It executes nothing: `GLOBAL` only resolves names from a fixed allow-list of what torch (and numpy)
//! checkpoints reference, and `REDUCE` / `BUILD` on those names are emulated here in Rust. Anything else
//! is an error naming the offending global. Every length is checked against the bytes actually present
//! before anything is allocated, so hostile input cannot force a huge allocation.
//!
//! Objects live in an arena and values refer to them by index: this reproduces pickle's shared, mutable
//! references (a memoised list that is filled afterwards) without copying, so memo tricks cannot blow up
//! memory either. The arena may contain cycles; consumers walk it with a depth limit.

use anyhow::{Result, anyhow, bail};
use std::collections::HashMap;
use std::rc::Rc;

/// Element types of torch storages (and the subset of numpy dtypes we decode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dtype {
    F64,
    F32,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl Dtype {
    pub fn size(self) -> usize {
        match self {
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool => 1,
        }
    }
}

/// The globals a checkpoint may name. Nothing outside this list can be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Global {
    RebuildTensorV2,
    RebuildTensor,
    RebuildParameter,
    Storage(Dtype),
    OrderedDict,
    TorchSize,
    NpReconstruct,
    NpNdarray,
    NpDtype,
    NpScalar,
    CodecsEncode,
}

fn resolve_global(module: &str, name: &str) -> Option<Global> {
    let storage = |d| Some(Global::Storage(d));
    match (module, name) {
        ("torch._utils", "_rebuild_tensor_v2") => Some(Global::RebuildTensorV2),
        ("torch._utils", "_rebuild_tensor") => Some(Global::RebuildTensor),
        ("torch._utils", "_rebuild_parameter") => Some(Global::RebuildParameter),
        ("torch", "FloatStorage") => storage(Dtype::F32),
        ("torch", "HalfStorage") => storage(Dtype::F16),
        ("torch", "BFloat16Storage") => storage(Dtype::BF16),
        ("torch", "DoubleStorage") => storage(Dtype::F64),
        ("torch", "LongStorage") => storage(Dtype::I64),
        ("torch", "IntStorage") => storage(Dtype::I32),
        ("torch", "ShortStorage") => storage(Dtype::I16),
        ("torch", "CharStorage") => storage(Dtype::I8),
        ("torch", "ByteStorage") => storage(Dtype::U8),
        ("torch", "BoolStorage") => storage(Dtype::Bool),
        ("collections", "OrderedDict") => Some(Global::OrderedDict),
        ("torch", "Size") => Some(Global::TorchSize),
        // numpy < 2 pickles `numpy.core`, numpy >= 2 `numpy._core`.
        ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct") => Some(Global::NpReconstruct),
        ("numpy.core.multiarray" | "numpy._core.multiarray", "scalar") => Some(Global::NpScalar),
        ("numpy", "ndarray") => Some(Global::NpNdarray),
        ("numpy", "dtype") => Some(Global::NpDtype),
        // Protocol 2 pickles Python 3 `bytes` as `_codecs.encode(text, "latin1")` (numpy raw data does this).
        ("_codecs", "encode") => Some(Global::CodecsEncode),
        _ => None,
    }
}

/// A pickled value. Containers and rebuilt objects live in the [`Pickle`] arena.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer too wide for i64: little-endian two's complement bytes.
    BigInt(Rc<[u8]>),
    Float(f64),
    Str(Rc<str>),
    Bytes(Rc<[u8]>),
    Ref(usize),
}

/// Where a tensor's data lives: a storage named by its key in the container.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    pub dtype: Dtype,
    pub key: String,
    /// Element count announced by the pickle (legacy: of the root storage).
    pub numel: u64,
    /// Legacy views: (view key, offset into the root storage in elements, view size).
    pub view: Option<(String, u64, u64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    pub storage: StorageRef,
    /// Offset into the storage, in elements.
    pub offset: u64,
    pub shape: Vec<u64>,
    pub stride: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Obj {
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// dict and OrderedDict; insertion order kept.
    Dict(Vec<(Value, Value)>),
    Global(Global),
    Storage(StorageRef),
    Tensor(TensorRef),
    /// A numpy object (dtype, ndarray, scalar): constructor arguments and BUILD state, kept undecoded.
    Numpy {
        kind: Global,
        args: Vec<Value>,
        state: Option<Value>,
    },
}

/// The result of unpickling: the arena and the root value.
#[derive(Debug)]
pub struct Pickle {
    pub objs: Vec<Obj>,
    pub root: Value,
}

impl Pickle {
    pub fn obj(&self, v: &Value) -> Option<&Obj> {
        match v {
            Value::Ref(i) => self.objs.get(*i),
            _ => None,
        }
    }

    /// The entries of a dict value.
    pub fn dict(&self, v: &Value) -> Option<&[(Value, Value)]> {
        match self.obj(v) {
            Some(Obj::Dict(items)) => Some(items),
            _ => None,
        }
    }

    pub fn tensor(&self, v: &Value) -> Option<&TensorRef> {
        match self.obj(v) {
            Some(Obj::Tensor(t)) => Some(t),
            _ => None,
        }
    }

    /// Look a string key up in a dict value.
    pub fn dict_get(&self, v: &Value, key: &str) -> Option<&Value> {
        self.dict(v)?.iter().find(|(k, _)| matches!(k, Value::Str(s) if &**s == key)).map(|(_, v)| v)
    }

    /// Every storage referenced anywhere in the arena (for the legacy container's data section).
    pub fn storages(&self) -> impl Iterator<Item = &StorageRef> {
        self.objs.iter().filter_map(|o| match o {
            Obj::Storage(s) => Some(s),
            Obj::Tensor(t) => Some(&t.storage),
            _ => None,
        })
    }
}

fn describe(v: &Value, objs: &[Obj]) -> String {
    match v {
        Value::None => "None".into(),
        Value::Bool(_) => "bool".into(),
        Value::Int(_) | Value::BigInt(_) => "int".into(),
        Value::Float(_) => "float".into(),
        Value::Str(_) => "str".into(),
        Value::Bytes(_) => "bytes".into(),
        Value::Ref(i) => match objs.get(*i) {
            Some(Obj::Tuple(_)) => "tuple".into(),
            Some(Obj::List(_)) => "list".into(),
            Some(Obj::Dict(_)) => "dict".into(),
            Some(Obj::Global(g)) => format!("global {g:?}"),
            Some(Obj::Storage(_)) => "storage".into(),
            Some(Obj::Tensor(_)) => "tensor".into(),
            Some(Obj::Numpy { kind, .. }) => format!("numpy {kind:?}"),
            None => "dangling reference".into(),
        },
    }
}

/// How persistent ids are interpreted: the two torch containers differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersId {
    /// No persistent ids allowed (plain pickles).
    None,
    /// Zip container: `('storage', StorageType, key, location, numel)`.
    Zip,
    /// Legacy container: `('storage', StorageType, root_key, location, numel, view_metadata)`.
    Legacy,
}

/// Unpickle one pickle starting at `data[0]`; returns it and the number of bytes consumed.
pub fn unpickle(data: &[u8], persid: PersId) -> Result<(Pickle, usize)> {
    let mut m = Machine { data, pos: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new(), objs: Vec::new(), persid };
    let root = m.run()?;
    Ok((Pickle { objs: m.objs, root }, m.pos))
}

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u32, Value>,
    objs: Vec<Obj>,
    persid: PersId,
}

impl<'a> Machine<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or_else(|| {
            anyhow!("truncated pickle: {n} bytes needed at offset {} but only {} remain", self.pos, self.data.len() - self.pos)
        })?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }

    fn u32(&mut self) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn u64(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }

    /// A length prefix, checked against what is left so nothing huge is ever allocated.
    fn len(&mut self, n: u64) -> Result<usize> {
        let left = (self.data.len() - self.pos) as u64;
        if n > left {
            bail!("truncated pickle: length {n} at offset {} exceeds the {left} bytes left", self.pos);
        }
        Ok(n as usize)
    }

    fn line(&mut self) -> Result<&'a str> {
        let rest = &self.data[self.pos..];
        let n = rest.iter().position(|&b| b == b'\n').ok_or_else(|| anyhow!("truncated pickle: unterminated line"))?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| anyhow!("pickle: non-UTF-8 global name"))?;
        self.pos += n + 1;
        Ok(s)
    }

    fn pop(&mut self) -> Result<Value> {
        let floor = self.marks.last().copied().unwrap_or(0);
        if self.stack.len() <= floor {
            bail!("malformed pickle: stack underflow at offset {}", self.pos);
        }
        Ok(self.stack.pop().unwrap())
    }

    fn top(&self) -> Result<&Value> {
        self.stack.last().ok_or_else(|| anyhow!("malformed pickle: empty stack at offset {}", self.pos))
    }

    fn pop_mark(&mut self) -> Result<Vec<Value>> {
        let m = self.marks.pop().ok_or_else(|| anyhow!("malformed pickle: no MARK at offset {}", self.pos))?;
        if m > self.stack.len() {
            bail!("malformed pickle: MARK above the stack at offset {}", self.pos);
        }
        Ok(self.stack.split_off(m))
    }

    fn alloc(&mut self, o: Obj) -> Value {
        self.objs.push(o);
        Value::Ref(self.objs.len() - 1)
    }

    fn push_str(&mut self, n: usize) -> Result<()> {
        let b = self.take(n)?;
        let s = std::str::from_utf8(b).map_err(|_| anyhow!("pickle: invalid UTF-8 string at offset {}", self.pos))?;
        self.stack.push(Value::Str(s.into()));
        Ok(())
    }

    fn push_bytes(&mut self, n: usize) -> Result<()> {
        let b = self.take(n)?;
        self.stack.push(Value::Bytes(b.into()));
        Ok(())
    }

    fn push_long(&mut self, n: usize) -> Result<()> {
        let b = self.take(n)?;
        let v = if n == 0 {
            Value::Int(0)
        } else if n <= 8 {
            // Sign-extend little-endian two's complement.
            let fill = if b[n - 1] & 0x80 != 0 { 0xff } else { 0 };
            let mut buf = [fill; 8];
            buf[..n].copy_from_slice(b);
            Value::Int(i64::from_le_bytes(buf))
        } else {
            Value::BigInt(b.into())
        };
        self.stack.push(v);
        Ok(())
    }

    fn global(&mut self, module: &str, name: &str) -> Result<()> {
        let g = resolve_global(module, name).ok_or_else(|| {
            anyhow!("checkpoint pickle references the global `{module}.{name}`, which is not allowed (only torch tensor/storage rebuilders, collections.OrderedDict and numpy arrays are accepted)")
        })?;
        let v = self.alloc(Obj::Global(g));
        self.stack.push(v);
        Ok(())
    }

    fn mutable(&mut self, v: &Value) -> Result<&mut Obj> {
        match v {
            Value::Ref(i) => Ok(&mut self.objs[*i]),
            _ => bail!("malformed pickle: expected a container at offset {}", self.pos),
        }
    }

    fn run(&mut self) -> Result<Value> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    let p = self.u8()?;
                    if p > 5 {
                        bail!("unsupported pickle protocol {p}");
                    }
                }
                0x95 => {
                    self.u64()?; // FRAME: a hint only
                }
                b'.' => {
                    let v = self.pop()?;
                    return Ok(v);
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    // As CPython: with nothing above the topmost MARK, POP discards that mark.
                    let floor = self.marks.last().copied().unwrap_or(0);
                    if self.stack.len() <= floor && !self.marks.is_empty() {
                        self.marks.pop();
                    } else {
                        self.pop()?;
                    }
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.stack.push(v);
                }
                b'N' => self.stack.push(Value::None),
                0x88 => self.stack.push(Value::Bool(true)),
                0x89 => self.stack.push(Value::Bool(false)),
                b'J' => {
                    let v = self.u32()? as i32;
                    self.stack.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.stack.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = self.u16()?;
                    self.stack.push(Value::Int(v as i64));
                }
                0x8a => {
                    let n = self.u8()? as u64;
                    let n = self.len(n)?;
                    self.push_long(n)?;
                }
                0x8b => {
                    let n = self.u32()? as u64;
                    let n = self.len(n)?;
                    self.push_long(n)?;
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.take(8)?.try_into().unwrap());
                    self.stack.push(Value::Float(v));
                }
                b'X' => {
                    let n = self.u32()? as u64;
                    let n = self.len(n)?;
                    self.push_str(n)?;
                }
                0x8c => {
                    let n = self.u8()? as u64;
                    let n = self.len(n)?;
                    self.push_str(n)?;
                }
                0x8d => {
                    let n = self.u64()?;
                    let n = self.len(n)?;
                    self.push_str(n)?;
                }
                // Python 2 str (BINSTRING / SHORT_BINSTRING): text if it is UTF-8, else bytes.
                b'T' | b'U' => {
                    let n = if op == b'T' { self.u32()? as u64 } else { self.u8()? as u64 };
                    let n = self.len(n)?;
                    let b = self.take(n)?;
                    let v = match std::str::from_utf8(b) {
                        Ok(s) => Value::Str(s.into()),
                        Err(_) => Value::Bytes(b.into()),
                    };
                    self.stack.push(v);
                }
                b'B' => {
                    let n = self.u32()? as u64;
                    let n = self.len(n)?;
                    self.push_bytes(n)?;
                }
                b'C' => {
                    let n = self.u8()? as u64;
                    let n = self.len(n)?;
                    self.push_bytes(n)?;
                }
                0x8e | 0x96 => {
                    let n = self.u64()?;
                    let n = self.len(n)?;
                    self.push_bytes(n)?;
                }
                b')' => {
                    let v = self.alloc(Obj::Tuple(Vec::new()));
                    self.stack.push(v);
                }
                b't' => {
                    let items = self.pop_mark()?;
                    let v = self.alloc(Obj::Tuple(items));
                    self.stack.push(v);
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    let v = self.alloc(Obj::Tuple(items));
                    self.stack.push(v);
                }
                b']' => {
                    let v = self.alloc(Obj::List(Vec::new()));
                    self.stack.push(v);
                }
                b'l' => {
                    let items = self.pop_mark()?;
                    let v = self.alloc(Obj::List(items));
                    self.stack.push(v);
                }
                b'a' | b'e' => {
                    let items = if op == b'a' { vec![self.pop()?] } else { self.pop_mark()? };
                    let target = self.top()?.clone();
                    match self.mutable(&target)? {
                        Obj::List(l) => l.extend(items),
                        _ => bail!("malformed pickle: APPEND to a non-list at offset {at}"),
                    }
                }
                b'}' => {
                    let v = self.alloc(Obj::Dict(Vec::new()));
                    self.stack.push(v);
                }
                b'd' => {
                    let items = self.pop_mark()?;
                    let pairs = pairs(items, at)?;
                    let v = self.alloc(Obj::Dict(pairs));
                    self.stack.push(v);
                }
                b's' | b'u' => {
                    let items = if op == b's' {
                        let v = self.pop()?;
                        let k = self.pop()?;
                        vec![k, v]
                    } else {
                        self.pop_mark()?
                    };
                    let new = pairs(items, at)?;
                    let target = self.top()?.clone();
                    match self.mutable(&target)? {
                        Obj::Dict(d) => {
                            for (k, v) in new {
                                // Python semantics: a repeated key overwrites in place.
                                match d.iter_mut().find(|(ek, _)| *ek == k) {
                                    Some(slot) => slot.1 = v,
                                    None => d.push((k, v)),
                                }
                            }
                        }
                        _ => bail!("malformed pickle: SETITEM on a non-dict at offset {at}"),
                    }
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.global(module, name)?;
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (&module, &name) {
                        (Value::Str(m), Value::Str(n)) => {
                            let (m, n) = (m.clone(), n.clone());
                            self.global(&m, &n)?
                        }
                        _ => {
                            bail!("malformed pickle: STACK_GLOBAL needs two strings at offset {at}")
                        }
                    }
                }
                b'R' => {
                    let args = self.pop()?;
                    let func = self.pop()?;
                    let v = self.reduce(&func, &args, at)?;
                    self.stack.push(v);
                }
                0x81 => bail!("unsupported pickle opcode NEWOBJ at offset {at} (torch checkpoints do not use it)"),
                b'b' => {
                    let state = self.pop()?;
                    let target = self.top()?.clone();
                    let desc = describe(&target, &self.objs);
                    match self.mutable(&target) {
                        // OrderedDict state (`_metadata`) and tensor state carry nothing we need.
                        Ok(Obj::Dict(_)) | Ok(Obj::Tensor(_)) => {}
                        Ok(Obj::Numpy { state: s, .. }) => *s = Some(state),
                        _ => bail!("malformed pickle: BUILD on a {desc} at offset {at}"),
                    }
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = self.persistent(&pid, at)?;
                    self.stack.push(v);
                }
                b'h' => {
                    let i = self.u8()? as u32;
                    self.get(i, at)?;
                }
                b'j' => {
                    let i = self.u32()?;
                    self.get(i, at)?;
                }
                b'q' => {
                    let i = self.u8()? as u32;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                b'r' => {
                    let i = self.u32()?;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                0x94 => {
                    let i = u32::try_from(self.memo.len()).map_err(|_| anyhow!("pickle memo overflow"))?;
                    let v = self.top()?.clone();
                    self.memo.insert(i, v);
                }
                _ => bail!("unsupported pickle opcode 0x{op:02x} at offset {at}"),
            }
        }
    }

    fn get(&mut self, i: u32, at: usize) -> Result<()> {
        let v = self.memo.get(&i).cloned().ok_or_else(|| anyhow!("malformed pickle: memo entry {i} missing at offset {at}"))?;
        self.stack.push(v);
        Ok(())
    }

    fn tuple(&self, v: &Value) -> Option<&[Value]> {
        match v {
            Value::Ref(i) => match &self.objs[*i] {
                Obj::Tuple(t) | Obj::List(t) => Some(t),
                _ => None,
            },
            _ => None,
        }
    }

    fn uints(&self, v: &Value, what: &str, at: usize) -> Result<Vec<u64>> {
        let items = self.tuple(v).ok_or_else(|| anyhow!("malformed tensor at offset {at}: {what} is not a tuple"))?;
        items
            .iter()
            .map(|x| match x {
                Value::Int(i) if *i >= 0 => Ok(*i as u64),
                _ => Err(anyhow!("malformed tensor at offset {at}: {what} has a non-integer or negative entry")),
            })
            .collect()
    }

    fn reduce(&mut self, func: &Value, args: &Value, at: usize) -> Result<Value> {
        let g = match func {
            Value::Ref(i) => match &self.objs[*i] {
                Obj::Global(g) => *g,
                _ => bail!("malformed pickle: REDUCE on a {} at offset {at}", describe(func, &self.objs)),
            },
            _ => bail!("malformed pickle: REDUCE on a {} at offset {at}", describe(func, &self.objs)),
        };
        let a: Vec<Value> =
            self.tuple(args).ok_or_else(|| anyhow!("malformed pickle: REDUCE arguments are not a tuple at offset {at}"))?.to_vec();
        match g {
            Global::RebuildTensorV2 | Global::RebuildTensor => {
                if a.len() < 4 {
                    bail!("malformed tensor at offset {at}: {} rebuild arguments", a.len());
                }
                let storage = match &a[0] {
                    Value::Ref(i) => match &self.objs[*i] {
                        Obj::Storage(s) => s.clone(),
                        _ => bail!("malformed tensor at offset {at}: first argument is not a storage"),
                    },
                    _ => bail!("malformed tensor at offset {at}: first argument is not a storage"),
                };
                let offset = match a[1] {
                    Value::Int(o) if o >= 0 => o as u64,
                    _ => bail!("malformed tensor at offset {at}: bad storage offset"),
                };
                let shape = self.uints(&a[2], "size", at)?;
                let stride = self.uints(&a[3], "stride", at)?;
                if shape.len() != stride.len() {
                    bail!("malformed tensor at offset {at}: size has {} dims, stride {}", shape.len(), stride.len());
                }
                Ok(self.alloc(Obj::Tensor(TensorRef { storage, offset, shape, stride })))
            }
            Global::RebuildParameter => match a.first() {
                Some(t @ Value::Ref(i)) if matches!(self.objs[*i], Obj::Tensor(_)) => Ok(t.clone()),
                _ => bail!("malformed parameter at offset {at}: data is not a tensor"),
            },
            Global::OrderedDict => {
                let mut d = Vec::new();
                if let Some(items) = a.first() {
                    let items = self.tuple(items).ok_or_else(|| anyhow!("malformed OrderedDict at offset {at}"))?.to_vec();
                    for it in items {
                        match self.tuple(&it) {
                            Some([k, v]) => d.push((k.clone(), v.clone())),
                            _ => bail!("malformed OrderedDict item at offset {at}"),
                        }
                    }
                }
                Ok(self.alloc(Obj::Dict(d)))
            }
            Global::TorchSize => {
                let items = match a.first() {
                    Some(t) => self.tuple(t).ok_or_else(|| anyhow!("malformed torch.Size at offset {at}"))?.to_vec(),
                    None => Vec::new(),
                };
                Ok(self.alloc(Obj::Tuple(items)))
            }
            Global::CodecsEncode => match a.as_slice() {
                [Value::Str(s), Value::Str(enc)] if &**enc == "latin1" || &**enc == "latin-1" => {
                    let mut out = Vec::with_capacity(s.len());
                    for c in s.chars() {
                        let c = u32::from(c);
                        if c > 0xff {
                            bail!("malformed pickle: non-latin1 text in _codecs.encode at offset {at}");
                        }
                        out.push(c as u8);
                    }
                    Ok(Value::Bytes(out.into()))
                }
                _ => bail!("pickle calls _codecs.encode with unsupported arguments at offset {at}"),
            },
            Global::NpReconstruct | Global::NpDtype | Global::NpScalar => Ok(self.alloc(Obj::Numpy { kind: g, args: a, state: None })),
            Global::Storage(_) | Global::NpNdarray => {
                bail!("pickle calls {g:?} at offset {at}, which checkpoints never do")
            }
        }
    }

    fn persistent(&mut self, pid: &Value, at: usize) -> Result<Value> {
        if self.persid == PersId::None {
            bail!("unexpected persistent id at offset {at} (this pickle may not reference storages)");
        }
        let t = self.tuple(pid).ok_or_else(|| anyhow!("malformed persistent id at offset {at}"))?.to_vec();
        let bad = || anyhow!("malformed storage reference at offset {at}");
        if !matches!(t.first(), Some(Value::Str(s)) if &**s == "storage") {
            bail!("unsupported persistent id at offset {at} (expected a ('storage', …) tuple)");
        }
        let want = if self.persid == PersId::Zip { 5 } else { 6 };
        if t.len() != want {
            bail!("malformed storage reference at offset {at}: {} fields, expected {want}", t.len());
        }
        let dtype = match &t[1] {
            Value::Ref(i) => match self.objs[*i] {
                Obj::Global(Global::Storage(d)) => d,
                _ => bail!("storage reference at offset {at} names a {} as its type", describe(&t[1], &self.objs)),
            },
            _ => return Err(bad()),
        };
        let key = match &t[2] {
            Value::Str(s) => s.to_string(),
            _ => return Err(bad()),
        };
        let numel = match t[4] {
            Value::Int(n) if n >= 0 => n as u64,
            _ => return Err(bad()),
        };
        let view = if want == 6 {
            match &t[5] {
                Value::None => None,
                v => match self.tuple(v) {
                    Some([Value::Str(k), Value::Int(o), Value::Int(n)]) if *o >= 0 && *n >= 0 => {
                        Some((k.to_string(), *o as u64, *n as u64))
                    }
                    _ => return Err(bad()),
                },
            }
        } else {
            None
        };
        Ok(self.alloc(Obj::Storage(StorageRef { dtype, key, numel, view })))
    }
}

fn pairs(items: Vec<Value>, at: usize) -> Result<Vec<(Value, Value)>> {
    if !items.len().is_multiple_of(2) {
        bail!("malformed pickle: odd number of dict items at offset {at}");
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Hand-assembled protocol-2 opcode streams.
    #[test]
    fn plain_values() {
        // {'a': [1, -2, 3.5], 'b': (True, None), 'c': 2**70}
        let mut p = vec![0x80, 2, b'}', b'q', 0, b'(', b'X', 1, 0, 0, 0, b'a', b']', b'q', 1, b'('];
        p.extend([b'K', 1, b'J', 0xfe, 0xff, 0xff, 0xff, b'G']);
        p.extend(3.5f64.to_be_bytes());
        p.extend([b'e', b'X', 1, 0, 0, 0, b'b', 0x88, b'N', 0x86, b'X', 1, 0, 0, 0, b'c', 0x8a, 9]);
        p.extend([0, 0, 0, 0, 0, 0, 0, 0, 0x40]);
        p.extend([b'u', b'.']);
        let (pk, used) = unpickle(&p, PersId::None).unwrap();
        assert_eq!(used, p.len());
        let a = pk.dict_get(&pk.root, "a").unwrap();
        assert_eq!(pk.obj(a), Some(&Obj::List(vec![Value::Int(1), Value::Int(-2), Value::Float(3.5)])));
        let b = pk.dict_get(&pk.root, "b").unwrap();
        assert_eq!(pk.obj(b), Some(&Obj::Tuple(vec![Value::Bool(true), Value::None])));
        match pk.dict_get(&pk.root, "c").unwrap() {
            Value::BigInt(b) => assert_eq!(&b[..], &[0, 0, 0, 0, 0, 0, 0, 0, 0x40]),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn memo_shares_mutable_objects() {
        // l = []; d = {'x': l, 'y': l}; l is filled after being memoised.
        let p =
            [0x80, 2, b'}', b'(', b'X', 1, 0, 0, 0, b'x', b']', b'q', 7, b'(', b'K', 5, b'e', b'X', 1, 0, 0, 0, b'y', b'h', 7, b'u', b'.'];
        let (pk, _) = unpickle(&p, PersId::None).unwrap();
        let y = pk.dict_get(&pk.root, "y").unwrap();
        assert_eq!(pk.obj(y), Some(&Obj::List(vec![Value::Int(5)])));
    }

    #[test]
    fn forbidden_global_is_named() {
        let p = b"\x80\x02cos\nsystem\nq\x00X\x02\x00\x00\x00lsq\x01\x85q\x02Rq\x03.";
        let e = unpickle(p, PersId::None).unwrap_err().to_string();
        assert!(e.contains("`os.system`"), "{e}");
        let p = b"\x80\x04\x8c\x08builtins\x8c\x04eval\x93.";
        let e = unpickle(p, PersId::None).unwrap_err().to_string();
        assert!(e.contains("`builtins.eval`"), "{e}");
    }

    #[test]
    fn hostile_lengths_and_truncation() {
        // BINUNICODE claiming 4 GiB, BINBYTES8 claiming 2^63, LONG4 claiming 2^31.
        for p in [&b"\x80\x02X\xff\xff\xff\xffab"[..], b"\x80\x02\x8e\x00\x00\x00\x00\x00\x00\x00\x80", b"\x80\x02\x8b\x00\x00\x00\x80"] {
            let e = unpickle(p, PersId::None).unwrap_err().to_string();
            assert!(e.contains("truncated"), "{e}");
        }
        // No STOP.
        assert!(unpickle(b"\x80\x02K\x01", PersId::None).is_err());
        // Unknown opcode.
        let e = unpickle(b"\x80\x02\xff", PersId::None).unwrap_err().to_string();
        assert!(e.contains("opcode 0xff"), "{e}");
        // Stack underflow, SETITEM on a list, APPEND on a dict, dangling memo.
        for p in [&b"\x80\x02."[..], b"\x80\x02]K\x01K\x02s.", b"\x80\x02}K\x01a.", b"\x80\x02h\x05."] {
            assert!(unpickle(p, PersId::None).is_err());
        }
    }

    #[test]
    fn pop_on_a_bare_mark_discards_the_mark() {
        // MARK POP K 7 STOP: the POP removes the mark, so the K is not trapped above it.
        let (pk, _) = unpickle(b"\x80\x02(0K\x07.", PersId::None).unwrap();
        assert_eq!(pk.root, Value::Int(7));
        // Control: without the POP the mark stays, and TUPLE collects the K above it.
        let (pk, _) = unpickle(b"\x80\x02(K\x07t.", PersId::None).unwrap();
        assert_eq!(pk.obj(&pk.root), Some(&Obj::Tuple(vec![Value::Int(7)])));
    }

    #[test]
    fn deep_nesting_does_not_recurse() {
        // 200k nested lists: parsing is iterative.
        let n = 200_000;
        let mut p = vec![0x80, 2];
        for _ in 0..n {
            p.extend([b'(']);
        }
        for _ in 0..n {
            p.extend([b'l']);
        }
        p.push(b'.');
        let (pk, _) = unpickle(&p, PersId::None).unwrap();
        assert_eq!(pk.objs.len(), n);
    }
}
