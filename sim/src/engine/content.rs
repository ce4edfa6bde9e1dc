//! What a request's tokens hold, as far as the prefix cache can tell, and the chained block hashes
//! vLLM derives from it (`vllm/v1/core/kv_cache_utils.py` `hash_block_tokens`, read in 0.11.0).
//!
//! vLLM hashes every full block as `hash(parent block's hash, the block's token ids)`, starting
//! from `NONE_HASH`, so two requests share a block's KV exactly when all tokens up to the end of
//! that block are equal. The simulator has no token ids: a request describes its leading tokens
//! as [`ContentSegment`]s, each `num_tokens` tokens from the start of a token stream named by an
//! id (a shared system prompt, a trace's `hash_ids`, a session's context), and every token past
//! them is unique to the request. A block's content is the list of (stream, offset, length)
//! pieces its tokens come from; [`BlockHashes`] chains those like `hash_block_tokens`, so equal
//! tokens give equal hashes whatever produced the description.
//!
//! Only blocks lying wholly inside the described content can ever be shared; a request without
//! shared content ([`PromptContent::Unique`]) never computes a hash. This module does not know
//! about block tables or the pool: `KvCacheManager` does.

use crate::workload::PrefixRef;
use std::collections::BTreeMap;
use std::sync::Arc;

/// `num_tokens` tokens from the start of the token stream `id`: two segments with the same id
/// hold the same tokens over their common length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ContentSegment {
    /// The token stream.
    pub id: u64,
    /// Tokens taken from its start.
    pub num_tokens: u32,
}

/// The described leading content of one request, as a list of segments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SegmentList {
    segments: Box<[ContentSegment]>,
    num_tokens: u32,
}

impl SegmentList {
    /// The segments in token order (empty ones dropped).
    pub fn new(segments: impl IntoIterator<Item = ContentSegment>) -> SegmentList {
        let segments: Box<[ContentSegment]> = segments.into_iter().filter(|s| s.num_tokens > 0).collect();
        let num_tokens = segments.iter().fold(0u32, |n, s| n.saturating_add(s.num_tokens));
        SegmentList { segments, num_tokens }
    }

    /// The segments.
    pub fn segments(&self) -> &[ContentSegment] {
        &self.segments
    }
}

/// The known leading content of a request's tokens (prompt, and possibly output tokens a later
/// request will repeat); every token past it is unique to the request.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PromptContent {
    /// Nothing shared with any other request: no block is ever hashed.
    #[default]
    Unique,
    /// The workload's synthetic shared prefix: `num_tokens` tokens of the stream
    /// [`prefix_stream_id`]`(group)`.
    Prefix(PrefixRef),
    /// Any described content (trace hash ids, session contexts).
    Segments(Arc<SegmentList>),
}

impl From<Option<PrefixRef>> for PromptContent {
    fn from(p: Option<PrefixRef>) -> Self {
        match p {
            Some(p) if p.num_tokens > 0 => PromptContent::Prefix(p),
            _ => PromptContent::Unique,
        }
    }
}

/// The token-stream id of the workload's shared prefix `group` (so a prefix group and an explicit
/// segment naming the same stream share blocks).
pub fn prefix_stream_id(group: u64) -> u64 {
    mix(PREFIX_DOMAIN ^ group)
}

/// The token-stream id of a trace's prefix block `block` (a Mooncake `hash_ids` entry), kept
/// apart from [`prefix_stream_id`]'s domain so trace blocks never alias synthetic prefixes.
pub fn trace_block_stream_id(block: u64) -> u64 {
    mix(TRACE_BLOCK_DOMAIN ^ mix(block))
}

impl PromptContent {
    /// The leading content of a `num_prompt_tokens`-token prompt whose trace blocks of
    /// `block_size` tokens are `blocks` (block 0 first): block k is `block_size` tokens (the last
    /// one: what is left of the prompt) of the stream [`trace_block_stream_id`]`(blocks[k])`.
    /// Chained hashing then shares engine block j exactly when every trace block up to it is
    /// equal, whatever the engine's block size. Ids past the prompt's end are ignored; tokens past
    /// the last id are unique to the request.
    pub fn trace_blocks(blocks: &[u64], block_size: u32, num_prompt_tokens: u32) -> PromptContent {
        let block_size = block_size.max(1);
        let mut left = num_prompt_tokens;
        PromptContent::segments(blocks.iter().map_while(|&b| {
            let take = left.min(block_size);
            left -= take;
            (take > 0).then_some(ContentSegment { id: trace_block_stream_id(b), num_tokens: take })
        }))
    }

    /// Content made of `segments`.
    pub fn segments(segments: impl IntoIterator<Item = ContentSegment>) -> PromptContent {
        let list = SegmentList::new(segments);
        if list.num_tokens == 0 { PromptContent::Unique } else { PromptContent::Segments(Arc::new(list)) }
    }

    /// The described content as segments in token order: one segment for a synthetic prefix
    /// group (its stream is [`prefix_stream_id`]), none for unique content. The live client
    /// draws a segment's token ids from its stream id, so equal segments send equal tokens.
    pub fn leading_segments(&self) -> impl Iterator<Item = ContentSegment> + '_ {
        let (single, list): (Option<ContentSegment>, &[ContentSegment]) = match self {
            PromptContent::Unique => (None, &[]),
            PromptContent::Prefix(p) => {
                (Some(ContentSegment { id: prefix_stream_id(p.group), num_tokens: p.num_tokens }), &[])
            }
            PromptContent::Segments(s) => (None, s.segments()),
        };
        single.into_iter().chain(list.iter().copied())
    }

    /// The content of a prompt known by its token ids (the emulator and the LB, which receive
    /// them): one segment per full block of `block_size` tokens, whose stream id chains the
    /// block's ids onto the previous block's (vLLM's `hash_block_tokens`), so two prompts get
    /// equal block hashes exactly over their equal leading full blocks. The partial last block
    /// is left out (never cached, as in vLLM).
    pub fn from_token_ids(ids: &[u32], block_size: u32) -> PromptContent {
        let block_size = block_size.max(1);
        let mut parent = NONE_HASH;
        PromptContent::segments(ids.chunks_exact(block_size as usize).map(|block| {
            let content = block.iter().fold(0u64, |h, &t| mix(h.rotate_left(5) ^ u64::from(t)));
            parent = hash_block(parent, content);
            ContentSegment { id: parent, num_tokens: block_size }
        }))
    }

    /// The synthetic prefix group, when that is what the content is.
    pub fn as_prefix(&self) -> Option<PrefixRef> {
        match self {
            PromptContent::Prefix(p) => Some(*p),
            _ => None,
        }
    }

    /// Tokens covered by described content (0 for unique content).
    #[inline]
    pub fn num_shared_tokens(&self) -> u32 {
        match self {
            PromptContent::Unique => 0,
            PromptContent::Prefix(p) => p.num_tokens,
            PromptContent::Segments(s) => s.num_tokens,
        }
    }

    /// The chained hashes of the full blocks of `block_size` tokens lying wholly inside the
    /// described content, block 0 first.
    pub fn block_hashes(&self, block_size: u32) -> BlockHashes<'_> {
        let (single, list): (ContentSegment, &[ContentSegment]) = match self {
            PromptContent::Unique => (ContentSegment { id: 0, num_tokens: 0 }, &[]),
            PromptContent::Prefix(p) => {
                (ContentSegment { id: prefix_stream_id(p.group), num_tokens: p.num_tokens }, &[])
            }
            PromptContent::Segments(s) => (ContentSegment { id: 0, num_tokens: 0 }, s.segments()),
        };
        let block_size = block_size.max(1);
        BlockHashes {
            single,
            list,
            index: 0,
            offset: 0,
            block_size,
            blocks_left: self.num_shared_tokens() / block_size,
            parent: NONE_HASH,
        }
    }
}

/// The chained block hashes of the synthetic prefix groups one KV cache manager has seen, so that
/// looking a prefix up does not rehash it (a workload has a few groups; every request of a group
/// shares the same hashes, which depend on the group and the block index only).
#[derive(Clone, Debug, Default)]
pub struct PrefixHashCache {
    groups: BTreeMap<u64, Vec<u64>>,
}

impl PrefixHashCache {
    /// The hashes of the first `num_blocks` blocks of prefix `group` in blocks of `block_size`
    /// tokens (the same block size at every call).
    pub fn block_hashes(&mut self, group: u64, block_size: u32, num_blocks: usize) -> &[u64] {
        let v = self.groups.entry(group).or_default();
        if v.len() < num_blocks {
            let num_tokens = u32::try_from(num_blocks).unwrap_or(u32::MAX).saturating_mul(block_size.max(1));
            *v = PromptContent::Prefix(PrefixRef { group, num_tokens }).block_hashes(block_size).collect();
        }
        &v[..num_blocks.min(v.len())]
    }
}

/// Iterator over the chained hashes of a content's full blocks (see [`PromptContent::block_hashes`]).
#[derive(Clone, Debug)]
pub struct BlockHashes<'a> {
    /// The one segment of a prefix group (used when `list` is empty).
    single: ContentSegment,
    list: &'a [ContentSegment],
    /// Current segment and the offset of the next token inside it.
    index: usize,
    offset: u32,
    block_size: u32,
    blocks_left: u32,
    parent: u64,
}

impl BlockHashes<'_> {
    fn segment(&self, i: usize) -> Option<ContentSegment> {
        if self.list.is_empty() { (i == 0).then_some(self.single) } else { self.list.get(i).copied() }
    }
}

impl Iterator for BlockHashes<'_> {
    type Item = u64;

    #[inline]
    fn next(&mut self) -> Option<u64> {
        if self.blocks_left == 0 {
            return None;
        }
        self.blocks_left -= 1;
        // The block's pieces: (stream, offset, length) until `block_size` tokens are covered.
        let mut need = self.block_size;
        let mut content = 0u64;
        while need > 0 {
            let seg = self.segment(self.index)?;
            let take = (seg.num_tokens - self.offset).min(need);
            content = mix(content ^ mix(seg.id ^ mix((u64::from(self.offset) << 32) | u64::from(take))));
            need -= take;
            self.offset += take;
            if self.offset == seg.num_tokens {
                self.index += 1;
                self.offset = 0;
            }
        }
        self.parent = hash_block(self.parent, content);
        Some(self.parent)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.blocks_left as usize, Some(self.blocks_left as usize))
    }
}

/// vLLM's `NONE_HASH`: the parent hash of a request's first block.
pub const NONE_HASH: u64 = 0x6e6f_6e65_5f68_6173;

/// Keeps prefix-group stream ids apart from other stream ids.
const PREFIX_DOMAIN: u64 = 0x7072_6566_6978_0000;

/// Keeps trace-block stream ids apart from other stream ids.
const TRACE_BLOCK_DOMAIN: u64 = 0x7472_6163_6562_6c6b;

/// `hash_block_tokens(parent_block_hash, block content)`: a 64-bit mix (vLLM uses sha256 or
/// Python's hash of the token tuple; any collision-resistant enough function gives the same
/// sharing).
#[inline]
fn hash_block(parent: u64, content: u64) -> u64 {
    mix(parent.rotate_left(23) ^ content.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

/// SplitMix64's finaliser: a bijective mix of 64 bits.
#[inline]
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(id: u64, num_tokens: u32) -> ContentSegment {
        ContentSegment { id, num_tokens }
    }

    fn hashes(c: &PromptContent, block_size: u32) -> Vec<u64> {
        c.block_hashes(block_size).collect()
    }

    #[test]
    fn unique_content_has_no_block_hashes() {
        assert!(hashes(&PromptContent::Unique, 16).is_empty());
        assert_eq!(PromptContent::from(None), PromptContent::Unique);
    }

    #[test]
    fn only_whole_blocks_inside_the_content_are_hashed() {
        let c = PromptContent::segments([seg(1, 40)]);
        assert_eq!(hashes(&c, 16).len(), 2);
        assert_eq!(c.block_hashes(16).size_hint(), (2, Some(2)));
    }

    #[test]
    fn equal_leading_tokens_give_equal_hashes_up_to_the_first_difference() {
        let a = hashes(&PromptContent::segments([seg(1, 64), seg(2, 64)]), 16);
        let b = hashes(&PromptContent::segments([seg(1, 64), seg(3, 64)]), 16);
        assert_eq!(a[..4], b[..4]);
        assert!(a[4..].iter().zip(&b[4..]).all(|(x, y)| x != y));
    }

    #[test]
    fn a_shorter_take_of_the_same_stream_shares_its_blocks() {
        let long = hashes(&PromptContent::segments([seg(9, 100)]), 16);
        let short = hashes(&PromptContent::segments([seg(9, 50)]), 16);
        assert_eq!(short[..], long[..3]);
    }

    #[test]
    fn a_different_first_block_changes_every_hash_after_it() {
        let a = hashes(&PromptContent::segments([seg(1, 16), seg(5, 64)]), 16);
        let b = hashes(&PromptContent::segments([seg(2, 16), seg(5, 64)]), 16);
        assert!(a.iter().zip(&b).all(|(x, y)| x != y), "chained: block 1+ differ too");
    }

    #[test]
    fn blocks_spanning_segment_boundaries_hash_their_pieces() {
        let a = hashes(&PromptContent::segments([seg(1, 8), seg(2, 24)]), 16);
        let b = hashes(&PromptContent::segments([seg(1, 8), seg(3, 24)]), 16);
        let c = hashes(&PromptContent::segments([seg(1, 16), seg(2, 16)]), 16);
        assert_eq!(a.len(), 2);
        assert_ne!(a[0], b[0]);
        assert_ne!(a[0], c[0], "8 + 8 tokens of two streams are not 16 of one");
    }

    #[test]
    fn the_prefix_cache_returns_the_groups_hashes_whatever_was_asked_before() {
        let mut cache = PrefixHashCache::default();
        let full = hashes(&PromptContent::from(Some(PrefixRef { group: 3, num_tokens: 160 })), 16);
        assert_eq!(cache.block_hashes(3, 16, 4), &full[..4]);
        assert_eq!(cache.block_hashes(3, 16, 10), &full[..]);
        assert_eq!(cache.block_hashes(3, 16, 2), &full[..2]);
        assert_ne!(cache.block_hashes(4, 16, 1), &full[..1]);
    }

    #[test]
    fn token_id_prompts_share_block_hashes_exactly_over_equal_leading_blocks() {
        let a: Vec<u32> = (0..100).collect();
        let mut b = a.clone();
        b[40] = 7; // inside block 2 (tokens 32..48)
        let ha = hashes(&PromptContent::from_token_ids(&a, 16), 16);
        let hb = hashes(&PromptContent::from_token_ids(&b, 16), 16);
        assert_eq!(ha.len(), 6, "the partial last block is not hashed");
        assert_eq!(ha[..2], hb[..2]);
        assert!(ha[2..].iter().zip(&hb[2..]).all(|(x, y)| x != y), "chained past the difference");
        let short = hashes(&PromptContent::from_token_ids(&a[..50], 16), 16);
        assert_eq!(short[..], ha[..3]);
        // Hashing by 16-token segments and grouping them in 32-token engine blocks still chains.
        let wide_a = hashes(&PromptContent::from_token_ids(&a, 16), 32);
        let wide_b = hashes(&PromptContent::from_token_ids(&b, 16), 32);
        assert_eq!(wide_a[0], wide_b[0]);
        assert_ne!(wide_a[1], wide_b[1]);
    }

    #[test]
    fn trace_blocks_share_engine_blocks_up_to_the_first_differing_trace_block() {
        // Trace blocks of 4 tokens, engine blocks of 2 (the 512 -> 16 conversion in small).
        let a = hashes(&PromptContent::trace_blocks(&[7, 8, 9], 4, 12), 2);
        let b = hashes(&PromptContent::trace_blocks(&[7, 8, 5], 4, 12), 2);
        let c = hashes(&PromptContent::trace_blocks(&[6, 8, 9], 4, 12), 2);
        assert_eq!(a.len(), 6);
        assert_eq!(a[..4], b[..4]);
        assert_ne!(a[4], b[4]);
        assert!(a.iter().zip(&c).all(|(x, y)| x != y), "a different first block: nothing shared");
    }

    #[test]
    fn a_final_partial_trace_block_covers_the_prompt_tail_only() {
        let c = PromptContent::trace_blocks(&[1, 2, 3, 4], 4, 10);
        assert_eq!(c.num_shared_tokens(), 10, "4 + 4 + 2 tokens; the id past the prompt is ignored");
        let full = hashes(&PromptContent::trace_blocks(&[1, 2, 3], 4, 12), 2);
        assert_eq!(hashes(&c, 2)[..], full[..5], "the tail is a shorter take of the same block");
        assert_ne!(trace_block_stream_id(3), prefix_stream_id(3));
    }

    #[test]
    fn a_prefix_group_is_a_segment_of_its_stream() {
        let p = PromptContent::from(Some(PrefixRef { group: 4, num_tokens: 48 }));
        let s = PromptContent::segments([seg(prefix_stream_id(4), 48)]);
        assert_eq!(hashes(&p, 16), hashes(&s, 16));
        assert_ne!(
            hashes(&p, 16),
            hashes(&PromptContent::from(Some(PrefixRef { group: 5, num_tokens: 48 })), 16)
        );
    }
}
