//! A reader of GGUF files (llama.cpp's model format): metadata, tensor directory and
//! dequantisation of F32, F16, BF16, Q8_0, Q4_0 and Q4_1 tensors to `f32`.
//!
//! Layout (GGUF v2/v3, little endian): magic `GGUF`, `u32` version, `u64` tensor count, `u64`
//! key-value count, the key-values, the tensor infos (name, dims in ggml order `ne0` = columns
//! first, type, offset into the data section), then the data section at the next multiple of
//! `general.alignment` (default 32). Dequantised data is row-major with `ne0` fastest, i.e. a
//! `[ne1, ne0]` matrix: Hugging Face's `[out_features, in_features]`.
//!
//! llama.cpp's converter permutes the rows of `attn_q` and `attn_k` for its interleaved-pair
//! RoPE; [`unpermute_qk`] restores Hugging Face's order (rotate-half RoPE).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use half::{bf16, f16};

/// An error reading a GGUF file; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not a GGUF file.
    #[error("{path}: not a GGUF file (magic {magic:?})")]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The first four bytes.
        magic: [u8; 4],
    },
    /// A GGUF version this reader does not know.
    #[error("{path}: unsupported GGUF version {version} (2 and 3 are supported)")]
    Version {
        /// The file.
        path: PathBuf,
        /// The version found.
        version: u32,
    },
    /// The file ends early, or a length points past its end.
    #[error("{path}: truncated or corrupt while reading {what} at byte {offset}")]
    Truncated {
        /// The file.
        path: PathBuf,
        /// What was being read.
        what: String,
        /// Where.
        offset: usize,
    },
    /// A metadata value of an unknown type.
    #[error("{path}: key `{key}` has unknown value type {ty}")]
    ValueType {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The type code.
        ty: u32,
    },
    /// A metadata key that is absent or of another type.
    #[error("{path}: metadata key `{key}` is missing or not {expected}")]
    Key {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
        /// What was expected.
        expected: &'static str,
    },
    /// A tensor that is not in the file.
    #[error("{path}: no tensor `{name}`")]
    MissingTensor {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
    },
    /// A tensor whose values (or block scales) are NaN or infinite.
    #[error(
        "{path}: tensor `{name}` holds a non-finite value (NaN or infinity) at element {index}"
    )]
    NonFinite {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// The first bad element (of a quantised tensor: its block's first).
        index: usize,
    },
    /// A tensor type this reader cannot dequantise.
    #[error("{path}: tensor `{name}` has unsupported type {ty:?}")]
    UnsupportedType {
        /// The file.
        path: PathBuf,
        /// The tensor.
        name: String,
        /// Its ggml type.
        ty: GgmlType,
    },
}

/// A ggml tensor type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    /// 32-bit float.
    F32,
    /// IEEE half.
    F16,
    /// 4-bit, symmetric, blocks of 32 (f16 scale).
    Q4_0,
    /// 4-bit with minimum, blocks of 32 (f16 scale and min).
    Q4_1,
    /// 8-bit, blocks of 32 (f16 scale).
    Q8_0,
    /// bfloat16.
    BF16,
    /// Any other type code (K-quants and others: not supported yet).
    Other(u32),
}

impl GgmlType {
    fn from_code(code: u32) -> Self {
        match code {
            0 => Self::F32,
            1 => Self::F16,
            2 => Self::Q4_0,
            3 => Self::Q4_1,
            8 => Self::Q8_0,
            30 => Self::BF16,
            other => Self::Other(other),
        }
    }

    /// The type code in the file.
    pub fn code(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q8_0 => 8,
            Self::BF16 => 30,
            Self::Other(c) => c,
        }
    }

    /// `(elements, bytes)` of one block; `None` for unsupported types.
    pub fn block(self) -> Option<(usize, usize)> {
        match self {
            Self::F32 => Some((1, 4)),
            Self::F16 | Self::BF16 => Some((1, 2)),
            Self::Q4_0 => Some((32, 18)),
            Self::Q4_1 => Some((32, 20)),
            Self::Q8_0 => Some((32, 34)),
            Self::Other(_) => None,
        }
    }
}

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Any unsigned integer.
    U64(u64),
    /// Any signed integer.
    I64(i64),
    /// Any float.
    F64(f64),
    /// A boolean.
    Bool(bool),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Value>),
}

/// One entry of the tensor directory.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Tensor name, e.g. `blk.0.attn_q.weight`.
    pub name: String,
    /// Dimensions in ggml order (`ne0` first: columns of a matrix).
    pub dims: Vec<u64>,
    /// Element type.
    pub ty: GgmlType,
    /// Offset from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// Number of elements (saturating: a directory entry whose dimensions overflow is refused
    /// at parse, its data running past the file's end).
    pub fn len(&self) -> usize {
        self.dims
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?))
            .unwrap_or(usize::MAX)
    }

    /// Whether the tensor has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The shape in row-major order (`[ne1, ne0]` for a matrix).
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }
}

/// A parsed GGUF file, its bytes in memory.
#[derive(Debug)]
pub struct Gguf {
    path: PathBuf,
    /// Format version.
    pub version: u32,
    /// Key-value metadata.
    pub metadata: BTreeMap<String, Value>,
    /// Tensor directory, in file order.
    pub tensors: Vec<TensorInfo>,
    bytes: Vec<u8>,
    data_offset: usize,
}

/// Deepest nesting of metadata arrays read.
const MAX_NESTING: usize = 4;

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], GgufError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| GgufError::Truncated {
                path: self.path.to_owned(),
                what: what.to_owned(),
                offset: self.pos,
            })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self, what: &str) -> Result<u32, GgufError> {
        Ok(u32::from_le_bytes(
            self.take(4, what)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self, what: &str) -> Result<u64, GgufError> {
        Ok(u64::from_le_bytes(
            self.take(8, what)?.try_into().expect("8 bytes"),
        ))
    }
    fn string(&mut self, what: &str) -> Result<String, GgufError> {
        let n = self.u64(what)? as usize;
        let pos = self.pos;
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| GgufError::Truncated {
            path: self.path.to_owned(),
            what: format!("{what} (invalid UTF-8)"),
            offset: pos,
        })
    }
    /// A value of type `ty`; `depth`: the arrays it sits in (nested past [`MAX_NESTING`] is
    /// corrupt: no model nests them, and a crafted file would recurse without bound).
    fn value(&mut self, ty: u32, key: &str, depth: usize) -> Result<Value, GgufError> {
        let what = format!("value of `{key}`");
        Ok(match ty {
            0 => Value::U64(u64::from(self.take(1, &what)?[0])),
            1 => Value::I64(i64::from(self.take(1, &what)?[0] as i8)),
            2 => Value::U64(u64::from(u16::from_le_bytes(
                self.take(2, &what)?.try_into().expect("2"),
            ))),
            3 => Value::I64(i64::from(i16::from_le_bytes(
                self.take(2, &what)?.try_into().expect("2"),
            ))),
            4 => Value::U64(u64::from(self.u32(&what)?)),
            5 => Value::I64(i64::from(self.u32(&what)? as i32)),
            6 => Value::F64(f64::from(f32::from_bits(self.u32(&what)?))),
            7 => Value::Bool(self.take(1, &what)?[0] != 0),
            8 => Value::String(self.string(&what)?),
            9 => {
                let inner = self.u32(&what)?;
                if depth >= MAX_NESTING {
                    return Err(GgufError::Truncated {
                        path: self.path.to_owned(),
                        what: format!("{what} (arrays nested past {MAX_NESTING} levels)"),
                        offset: self.pos,
                    });
                }
                let n = self.u64(&what)? as usize;
                // Each element takes at least one byte: a count past the end is corrupt.
                if n > self.bytes.len() - self.pos {
                    return Err(GgufError::Truncated {
                        path: self.path.to_owned(),
                        what,
                        offset: self.pos,
                    });
                }
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(self.value(inner, key, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(&what)?),
            11 => Value::I64(self.u64(&what)? as i64),
            12 => Value::F64(f64::from_bits(self.u64(&what)?)),
            ty => {
                return Err(GgufError::ValueType {
                    path: self.path.to_owned(),
                    key: key.to_owned(),
                    ty,
                });
            }
        })
    }
}

impl Gguf {
    /// Reads and parses a GGUF file.
    pub fn open(path: &Path) -> Result<Self, GgufError> {
        let bytes = std::fs::read(path).map_err(|source| GgufError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(bytes, path)
    }

    /// Parses GGUF bytes (`path` names them in errors).
    pub fn parse(bytes: Vec<u8>, path: &Path) -> Result<Self, GgufError> {
        let mut c = Cursor {
            bytes: &bytes,
            pos: 0,
            path,
        };
        let magic: [u8; 4] = c.take(4, "magic")?.try_into().expect("4 bytes");
        if &magic != b"GGUF" {
            return Err(GgufError::BadMagic {
                path: path.to_owned(),
                magic,
            });
        }
        let version = c.u32("version")?;
        if !(2..=3).contains(&version) {
            return Err(GgufError::Version {
                path: path.to_owned(),
                version,
            });
        }
        let n_tensors = c.u64("tensor count")? as usize;
        let n_kv = c.u64("key-value count")? as usize;
        let mut metadata = BTreeMap::new();
        for _ in 0..n_kv {
            let key = c.string("metadata key")?;
            let ty = c.u32(&format!("type of `{key}`"))?;
            let value = c.value(ty, &key, 0)?;
            metadata.insert(key, value);
        }
        let mut tensors = Vec::with_capacity(n_tensors.min(1 << 16));
        for i in 0..n_tensors {
            let name = c.string(&format!("name of tensor {i}"))?;
            let n_dims = c.u32(&format!("rank of `{name}`"))? as usize;
            let dims = (0..n_dims)
                .map(|_| c.u64(&format!("dims of `{name}`")))
                .collect::<Result<_, _>>()?;
            let ty = GgmlType::from_code(c.u32(&format!("type of `{name}`"))?);
            let offset = c.u64(&format!("offset of `{name}`"))?;
            tensors.push(TensorInfo {
                name,
                dims,
                ty,
                offset,
            });
        }
        let alignment = match metadata.get("general.alignment") {
            Some(Value::U64(a)) if *a > 0 => *a as usize,
            _ => 32,
        };
        let data_offset = c.pos.div_ceil(alignment) * alignment;
        let file = Self {
            path: path.to_owned(),
            version,
            metadata,
            tensors,
            bytes,
            data_offset,
        };
        for t in &file.tensors {
            file.check_finite(t, file.tensor_bytes(t)?)?;
        }
        Ok(file)
    }

    /// The file this was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A tensor's directory entry.
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo, GgufError> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| GgufError::MissingTensor {
                path: self.path.clone(),
                name: name.to_owned(),
            })
    }

    fn tensor_bytes(&self, t: &TensorInfo) -> Result<&[u8], GgufError> {
        let (elems, bytes) = t.ty.block().ok_or_else(|| GgufError::UnsupportedType {
            path: self.path.clone(),
            name: t.name.clone(),
            ty: t.ty,
        })?;
        let n = t.len();
        let truncated = || GgufError::Truncated {
            path: self.path.clone(),
            what: format!("data of tensor `{}`", t.name),
            offset: self.data_offset + t.offset as usize,
        };
        if !n.is_multiple_of(elems) {
            return Err(truncated());
        }
        let start = self
            .data_offset
            .checked_add(t.offset as usize)
            .ok_or_else(truncated)?;
        let size = (n / elems).checked_mul(bytes).ok_or_else(truncated)?;
        let end = start.checked_add(size).ok_or_else(truncated)?;
        self.bytes.get(start..end).ok_or_else(truncated)
    }

    /// Refuses NaN and infinities: every value of a float tensor, every block scale (and
    /// minimum) of a quantised one. A scan of the bytes, about 1 ms per 100 MB.
    fn check_finite(&self, t: &TensorInfo, data: &[u8]) -> Result<(), GgufError> {
        let f16 = |b: &[u8]| half::f16::from_le_bytes([b[0], b[1]]).is_finite();
        let bf16 = |b: &[u8]| half::bf16::from_le_bytes([b[0], b[1]]).is_finite();
        let f32 = |b: &[u8]| f32::from_le_bytes([b[0], b[1], b[2], b[3]]).is_finite();
        let bad = match t.ty {
            GgmlType::F32 => data.chunks_exact(4).position(|b| !f32(b)),
            GgmlType::F16 => data.chunks_exact(2).position(|b| !f16(b)),
            GgmlType::BF16 => data.chunks_exact(2).position(|b| !bf16(b)),
            GgmlType::Q4_0 | GgmlType::Q8_0 => data
                .chunks_exact(t.ty.block().map_or(1, |b| b.1))
                .position(|b| !f16(b))
                .map(|i| i * 32),
            GgmlType::Q4_1 => data
                .chunks_exact(20)
                .position(|b| !(f16(b) && f16(&b[2..])))
                .map(|i| i * 32),
            GgmlType::Other(_) => None,
        };
        match bad {
            Some(index) => Err(GgufError::NonFinite {
                path: self.path.clone(),
                name: t.name.clone(),
                index,
            }),
            None => Ok(()),
        }
    }

    /// The raw bytes of a tensor (its blocks, for quantised types).
    pub fn tensor_data(&self, name: &str) -> Result<&[u8], GgufError> {
        self.tensor_bytes(self.tensor(name)?)
    }

    /// A tensor dequantised to `f32`, row-major (see the module docs).
    pub fn dequantize(&self, name: &str) -> Result<Vec<f32>, GgufError> {
        let t = self.tensor(name)?;
        Ok(dequantize(t.ty, self.tensor_bytes(t)?).expect("type checked by tensor_bytes"))
    }

    /// A `u32`-valued key.
    pub fn u32(&self, key: &str) -> Result<u32, GgufError> {
        match self.metadata.get(key) {
            Some(Value::U64(v)) => u32::try_from(*v).ok(),
            Some(Value::I64(v)) => u32::try_from(*v).ok(),
            _ => None,
        }
        .ok_or_else(|| self.key_error(key, "an unsigned integer"))
    }

    /// A float-valued key.
    pub fn f64(&self, key: &str) -> Result<f64, GgufError> {
        match self.metadata.get(key) {
            Some(Value::F64(v)) => Ok(*v),
            _ => Err(self.key_error(key, "a float")),
        }
    }

    /// A string-valued key.
    pub fn str(&self, key: &str) -> Result<&str, GgufError> {
        match self.metadata.get(key) {
            Some(Value::String(s)) => Ok(s),
            _ => Err(self.key_error(key, "a string")),
        }
    }

    /// A key holding an array of strings (the tokenizer's vocabulary and merges).
    pub fn str_array(&self, key: &str) -> Result<Vec<&str>, GgufError> {
        match self.metadata.get(key) {
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Some(s.as_str()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| self.key_error(key, "an array of strings")),
            _ => Err(self.key_error(key, "an array of strings")),
        }
    }

    fn key_error(&self, key: &str, expected: &'static str) -> GgufError {
        GgufError::Key {
            path: self.path.clone(),
            key: key.to_owned(),
            expected,
        }
    }
}

/// Dequantises the bytes of a tensor of type `ty`; `None` for unsupported types.
pub fn dequantize(ty: GgmlType, bytes: &[u8]) -> Option<Vec<f32>> {
    let h = |b: &[u8]| f16::from_le_bytes([b[0], b[1]]).to_f32();
    Some(match ty {
        GgmlType::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        GgmlType::F16 => bytes.chunks_exact(2).map(h).collect(),
        GgmlType::BF16 => bytes
            .chunks_exact(2)
            .map(|b| bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        GgmlType::Q8_0 => {
            let mut out = Vec::with_capacity(bytes.len() / 34 * 32);
            for block in bytes.chunks_exact(34) {
                let d = h(&block[..2]);
                out.extend(block[2..].iter().map(|&q| d * f32::from(q as i8)));
            }
            out
        }
        GgmlType::Q4_0 | GgmlType::Q4_1 => {
            let with_min = ty == GgmlType::Q4_1;
            let size = if with_min { 20 } else { 18 };
            let mut out = Vec::with_capacity(bytes.len() / size * 32);
            for block in bytes.chunks_exact(size) {
                let d = h(&block[..2]);
                let (m, qs) = if with_min {
                    (h(&block[2..4]), &block[4..])
                } else {
                    (0.0, &block[2..])
                };
                let offset = if with_min { 0.0 } else { -8.0 };
                let mut w = [0.0f32; 32];
                for (j, &q) in qs.iter().enumerate() {
                    w[j] = d * (f32::from(q & 0x0F) + offset) + m;
                    w[j + 16] = d * (f32::from(q >> 4) + offset) + m;
                }
                out.extend_from_slice(&w);
            }
            out
        }
        GgmlType::Other(_) => return None,
    })
}

/// The GGUF row that holds Hugging Face row `hf` of an `attn_q`/`attn_k` matrix with `rows` rows
/// and `n_head` heads. llama.cpp's converter permutes the rows for its interleaved-pair RoPE: HF
/// row `h * d + half * d/2 + i` (head `h`, head dim `d`) is GGUF row `h * d + 2 i + half`.
pub fn permuted_qk_row(hf: usize, rows: usize, n_head: usize) -> usize {
    let d = rows / n_head;
    let (h, r) = (hf / d, hf % d);
    let (half, i) = (r / (d / 2), r % (d / 2));
    h * d + 2 * i + half
}

/// Undoes llama.cpp's permutation of the rows of `attn_q`/`attn_k` (`rows x cols`, row-major),
/// restoring Hugging Face's order for rotate-half RoPE (see [`permuted_qk_row`]).
pub fn unpermute_qk(w: &[f32], rows: usize, cols: usize, n_head: usize) -> Vec<f32> {
    let mut out = vec![0.0; rows * cols];
    for hf in 0..rows {
        let gg = permuted_qk_row(hf, rows, n_head);
        out[hf * cols..(hf + 1) * cols].copy_from_slice(&w[gg * cols..(gg + 1) * cols]);
    }
    out
}
