//! One measured step (or interval of steps) and its batch features: the rows every fit reads,
//! whether they come from a server's step log or were reconstructed from client timestamps.
//! Also the terms of the linear step-time model and how a profile evaluates them.

use crate::profile::Coefficients;

/// What one measured interval ran: the batch features of its engine steps, summed (an interval
/// is one step except where steps left no visible trace; the model is linear, so sums fit too).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StepFeatures {
    /// Engine steps in the interval (each pays `fixed_s`).
    pub num_steps: u32,
    /// Of those, steps run eagerly next to CUDA-graph steps (each pays `eager_fixed_s`).
    pub num_eager_steps: u32,
    /// Requests scheduled (summed over the steps).
    pub num_scheduled_requests: u64,
    /// Prompt (or recompute) tokens computed.
    pub num_prefill_tokens: u64,
    /// Sequences decoding one token.
    pub num_decode_seqs: u64,
    /// CUDA-graph padding tokens (padded size minus scheduled tokens), charged like decodes.
    pub num_padding_tokens: u64,
    /// KV tokens read by attention (context of every scheduled sequence, new tokens included).
    pub num_kv_tokens_read: u64,
    /// Prefill attention pairs: per chunk of `n` new tokens after `c` computed ones,
    /// `n * c + n * n / 2` (as the simulator's scheduler counts them).
    pub num_prefill_attn_pairs: u64,
}

impl StepFeatures {
    /// Adds a prefill chunk of `n` new tokens after `computed` tokens of one request.
    pub fn add_prefill_chunk(&mut self, computed: u64, n: u64) {
        self.num_scheduled_requests += 1;
        self.num_prefill_tokens += n;
        self.num_kv_tokens_read += computed + n;
        self.num_prefill_attn_pairs += n * computed + n * n / 2;
    }

    /// Adds one decoding sequence whose context after this step is `context` tokens.
    pub fn add_decode(&mut self, context: u64) {
        self.num_scheduled_requests += 1;
        self.num_decode_seqs += 1;
        self.num_kv_tokens_read += context;
    }

    /// True when the interval computed any prompt tokens.
    pub fn has_prefill(&self) -> bool {
        self.num_prefill_tokens > 0
    }
}

/// One row of a fit: a measured duration and what ran in it.
#[derive(Clone, Debug, PartialEq)]
pub struct StepSample {
    /// Index of the run dir it came from (in the order given).
    pub run: usize,
    /// Instance name.
    pub instance: String,
    /// Rows with the same chain id, next to each other, are consecutive steps timed from one
    /// clock (the end of one is the start of the next): the fit then works on their end times,
    /// where timestamp jitter is independent from step to step (see `fit`). Every other row has
    /// a chain of its own.
    pub chain: u64,
    /// Measured duration, seconds.
    pub duration_s: f64,
    /// What ran.
    pub features: StepFeatures,
}

/// A term of the linear step-time model: one column of the design matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Term {
    /// `fixed_s` x steps.
    Fixed,
    /// `per_prefill_token_s` x prefill tokens.
    PrefillToken,
    /// `per_decode_seq_s` x (decoding sequences + graph padding tokens).
    DecodeSeq,
    /// `per_kv_token_s` x KV tokens read.
    KvToken,
    /// `per_prefill_attn_pair_s` x prefill attention pairs.
    PrefillAttnPair,
    /// `eager_fixed_s` x eager steps.
    EagerFixed,
}

impl Term {
    /// Every term, in column order.
    pub const ALL: [Term; 6] = [
        Term::Fixed,
        Term::PrefillToken,
        Term::DecodeSeq,
        Term::KvToken,
        Term::PrefillAttnPair,
        Term::EagerFixed,
    ];

    /// The profile key the coefficient is written under.
    pub fn key(self) -> &'static str {
        match self {
            Term::Fixed => "fixed_s",
            Term::PrefillToken => "per_prefill_token_s",
            Term::DecodeSeq => "per_decode_seq_s",
            Term::KvToken => "per_kv_token_s",
            Term::PrefillAttnPair => "per_prefill_attn_pair_s",
            Term::EagerFixed => "eager_fixed_s",
        }
    }

    /// This term's column value for `f`.
    pub fn value(self, f: &StepFeatures) -> f64 {
        match self {
            Term::Fixed => f64::from(f.num_steps),
            Term::PrefillToken => f.num_prefill_tokens as f64,
            Term::DecodeSeq => (f.num_decode_seqs + f.num_padding_tokens) as f64,
            Term::KvToken => f.num_kv_tokens_read as f64,
            Term::PrefillAttnPair => f.num_prefill_attn_pairs as f64,
            Term::EagerFixed => f64::from(f.num_eager_steps),
        }
    }
}

/// GPU coefficients plus the eager-step cost: everything a fit estimates.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepModel {
    /// `[coefficients]`.
    pub coefficients: Coefficients,
    /// `[cuda_graphs] eager_fixed_s`.
    pub eager_fixed_s: f64,
}

impl StepModel {
    /// The coefficient of `term`.
    pub fn get(&self, term: Term) -> f64 {
        let c = &self.coefficients;
        match term {
            Term::Fixed => c.fixed_s,
            Term::PrefillToken => c.per_prefill_token_s,
            Term::DecodeSeq => c.per_decode_seq_s,
            Term::KvToken => c.per_kv_token_s,
            Term::PrefillAttnPair => c.per_prefill_attn_pair_s,
            Term::EagerFixed => self.eager_fixed_s,
        }
    }

    /// Sets the coefficient of `term`.
    pub fn set(&mut self, term: Term, v: f64) {
        let c = &mut self.coefficients;
        match term {
            Term::Fixed => c.fixed_s = v,
            Term::PrefillToken => c.per_prefill_token_s = v,
            Term::DecodeSeq => c.per_decode_seq_s = v,
            Term::KvToken => c.per_kv_token_s = v,
            Term::PrefillAttnPair => c.per_prefill_attn_pair_s = v,
            Term::EagerFixed => self.eager_fixed_s = v,
        }
    }

    /// Predicted duration of `f`, seconds.
    pub fn predict(&self, f: &StepFeatures) -> f64 {
        Term::ALL.iter().map(|&t| self.get(t) * t.value(f)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_count_like_the_simulators_scheduler() {
        let mut f = StepFeatures { num_steps: 1, ..StepFeatures::default() };
        // A 100-token prompt computed in chunks of 60 and 40, then one decode producing token 1.
        f.add_prefill_chunk(0, 60);
        f.add_prefill_chunk(60, 40);
        f.add_decode(101);
        assert_eq!(f.num_prefill_tokens, 100);
        assert_eq!(f.num_kv_tokens_read, 60 + 100 + 101);
        assert_eq!(f.num_prefill_attn_pairs, 60 * 30 + (40 * 60 + 40 * 20));
        assert_eq!((f.num_decode_seqs, f.num_scheduled_requests), (1, 3));
    }

    #[test]
    fn a_model_predicts_the_sum_of_its_terms() {
        let mut m = StepModel::default();
        m.set(Term::Fixed, 0.01);
        m.set(Term::DecodeSeq, 1e-4);
        m.set(Term::EagerFixed, 0.002);
        let f = StepFeatures {
            num_steps: 1,
            num_eager_steps: 1,
            num_decode_seqs: 8,
            num_padding_tokens: 2,
            ..StepFeatures::default()
        };
        assert!((m.predict(&f) - (0.01 + 10.0 * 1e-4 + 0.002)).abs() < 1e-15);
    }
}
