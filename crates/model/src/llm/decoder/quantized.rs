//! The projections of a GGUF model kept in their 4-bit (or 8-bit) blocks, for gradient-free CPU
//! inference: what [`super::HostDecoder`] and short scoring passes multiply from.

use burn::tensor::Tensor;

use super::Block;
use crate::llm::quant::QMatrix;
use crate::llm::{LlamaConfig, LlmError};

/// The projections of one block in their GGUF blocks (CPU inference only).
#[derive(Debug, Clone)]
pub(super) struct QBlock {
    /// Q, K and V stacked.
    pub(super) qkv: QMatrix,
    pub(super) o: QMatrix,
    /// Gate and up stacked.
    pub(super) gate_up: QMatrix,
    pub(super) down: QMatrix,
    /// The block's RMSNorm weights on the host (for [`super::HostDecoder`]).
    pub(super) attn_norm: Vec<f32>,
    pub(super) ffn_norm: Vec<f32>,
}

#[derive(Debug, Clone)]
pub(super) struct Quantized {
    pub(super) blocks: Vec<QBlock>,
    pub(super) head: QMatrix,
    /// The final RMSNorm weights on the host.
    pub(super) norm: Vec<f32>,
}

/// The quantised projections of a GGUF model, if every one of them is in a block type
/// [`QMatrix`] multiplies from.
pub(super) fn quantized(
    g: &crate::gguf::Gguf,
    c: &LlamaConfig,
    dense: &[Block],
    norm: &Tensor<1>,
) -> Result<Option<std::sync::Arc<Quantized>>, LlmError> {
    let head_name = if c.tie_embeddings {
        "token_embd.weight"
    } else {
        "output.weight"
    };
    let Some(head) = QMatrix::from_gguf(g, head_name, None)? else {
        return Ok(None);
    };
    let mut blocks = Vec::with_capacity(c.num_layers);
    for i in 0..c.num_layers {
        let m = |n: &str, heads: Option<usize>| {
            QMatrix::from_gguf(g, &format!("blk.{i}.{n}.weight"), heads)
        };
        let parts = (
            m("attn_q", Some(c.num_heads))?,
            m("attn_k", Some(c.num_kv_heads))?,
            m("attn_v", None)?,
            m("attn_output", None)?,
            m("ffn_gate", None)?,
            m("ffn_up", None)?,
            m("ffn_down", None)?,
        );
        let (Some(q), Some(k), Some(v), Some(o), Some(gate), Some(up), Some(down)) = parts else {
            return Ok(None);
        };
        let (Some(qkv), Some(gate_up)) = (
            QMatrix::stack(vec![q, k, v]),
            QMatrix::stack(vec![gate, up]),
        ) else {
            return Ok(None);
        };
        blocks.push(QBlock {
            qkv,
            o,
            gate_up,
            down,
            attn_norm: crate::backend::host_f32(dense[i].attn_norm.clone()),
            ffn_norm: crate::backend::host_f32(dense[i].ffn_norm.clone()),
        });
    }
    Ok(Some(std::sync::Arc::new(Quantized {
        blocks,
        head,
        norm: crate::backend::host_f32(norm.clone()),
    })))
}
