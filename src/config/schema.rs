//! The configuration sections, their defaults and their checks.
use super::ConfigError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(default)]
pub struct Config {
    pub model: ModelConfig,
    pub data: DataConfig,
    pub train: TrainConfig,
    pub zero: ZeroConfig,
    pub precision: PrecisionConfig,
    pub checkpoint: CheckpointConfig,
    pub log: LogConfig,
    pub system: SystemConfig,
    /// Where this config came from (not a key).
    #[serde(skip)]
    pub source: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    Gpt,
    Mlp,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ModelConfig {
    pub kind: ModelKind,
    // gpt
    pub n_layer: usize,
    pub n_head: usize,
    pub d_model: usize,
    pub ctx: usize,
    pub vocab: usize,
    // mlp
    pub inputs: usize,
    pub hidden: Vec<usize>,
    pub classes: usize,
    /// Initial parameters: `""` seeded (`train.seed`), or `"hf:DIR"` a Hugging Face GPT-2
    /// directory (`model.safetensors` or sharded with its index; `checkpoint/hf/import.rs`).
    /// A resumed run (`checkpoint.resume` finding a checkpoint) does not read it.
    pub init: String,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            kind: ModelKind::Gpt,
            n_layer: 2,
            n_head: 2,
            d_model: 32,
            ctx: 16,
            vocab: 64,
            inputs: 16,
            hidden: vec![32],
            classes: 4,
            init: String::new(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DataSource {
    Synthetic,
    Hdf5,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Sampling {
    Random,
    Epoch,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DataConfig {
    pub source: DataSource,
    /// Dataset directory (with `manifest.json`) for `source = "hdf5"`.
    pub path: String,
    pub sampling: Sampling,
    /// Batches the prefetch thread keeps ready.
    pub prefetch: usize,
    /// Check each shard's checksum against manifest.json the first time this rank reads
    /// it (in the prefetch thread; one full read of the shard).
    pub verify: bool,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            source: DataSource::Synthetic,
            path: String::new(),
            sampling: Sampling::Random,
            prefetch: 4,
            verify: true,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    Sgd,
    Adam,
    Adamw,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Constant,
    Cosine,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct TrainConfig {
    pub steps: usize,
    /// Sequences (or samples) per rank per micro-step.
    pub micro_batch: usize,
    pub grad_accum: usize,
    /// Optional check: must equal micro_batch * grad_accum * world size (0 = unchecked).
    pub global_batch: usize,
    pub optimizer: OptimizerKind,
    pub lr: f64,
    pub min_lr: f64,
    pub warmup: usize,
    pub schedule: Schedule,
    /// Steps over which cosine decays to min_lr (0 = `steps`).
    pub decay_steps: usize,
    pub betas: [f64; 2],
    pub eps: f64,
    pub weight_decay: f64,
    pub momentum: f64,
    /// Clip the global gradient norm to this (0 = no clipping).
    pub clip_grad: f64,
    pub seed: u64,
    /// Evaluate every this many steps (0 = never, except at the end when > 0 batches).
    pub eval_every: usize,
    pub eval_batches: usize,
    /// Wall-clock limit of the run: save a checkpoint and stop (exit code 75, resumable)
    /// before it, in Slurm's format `[D-]HH:MM:SS`, `MM:SS` or seconds ("" = none).
    /// Slurm's job end time (`SLURM_JOB_END_TIME`) applies too when it is set. A bare
    /// integer (`time_limit = 3600`, Torque's PBS_WALLTIME) is seconds.
    #[serde(deserialize_with = "string_or_seconds")]
    pub time_limit: String,
}

/// A duration given as a string, or as a whole number of seconds (kept as its digits).
fn string_or_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    struct Duration;
    impl serde::de::Visitor<'_> for Duration {
        type Value = String;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a duration such as \"01:30:00\", \"2-00:00:00\" or whole seconds")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<String, E> {
            u64::try_from(v)
                .map(|v| v.to_string())
                .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
        }
    }
    d.deserialize_any(Duration)
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 20,
            micro_batch: 4,
            grad_accum: 1,
            global_batch: 0,
            optimizer: OptimizerKind::Adamw,
            lr: 1e-3,
            min_lr: 1e-4,
            warmup: 0,
            schedule: Schedule::Constant,
            decay_steps: 0,
            betas: [0.9, 0.95],
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.9,
            clip_grad: 0.0,
            seed: 1337,
            eval_every: 0,
            eval_batches: 4,
            time_limit: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ZeroConfig {
    pub stage: u8,
    /// Gradient bucket size in MiB: small neighbouring units are fused up to this.
    pub bucket_mb: f64,
    /// Stage 3: all-gather the next unit while computing this one.
    pub prefetch: bool,
    /// Stage 3: free gathered parameters after forward (false keeps them until backward).
    pub reshard_after_forward: bool,
    /// The ranks states are sharded over: "world" (all), "node" (the ranks of one node,
    /// replicated across nodes: hybrid sharding, HSDP), or a number K (blocks of K
    /// consecutive ranks, written as a number or a string). See [`ShardGroup`].
    #[serde(deserialize_with = "string_or_number")]
    pub shard_group: String,
}

/// A string, or a whole number kept as its digits (`zero.shard_group = 2` or `"2"`).
fn string_or_number<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        Text(String),
        Number(u64),
    }
    Ok(match Either::deserialize(d)? {
        Either::Text(s) => s,
        Either::Number(n) => n.to_string(),
    })
}

/// Where `zero.shard_group` shards the states (docs/architecture.md, "Hybrid sharding").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardGroup {
    /// Over every rank.
    World,
    /// Over the ranks of each node; the nodes hold replicas.
    Node,
    /// Over blocks of this many consecutive ranks; the blocks hold replicas.
    Ranks(usize),
}

impl ZeroConfig {
    /// `shard_group` parsed, or why it does not parse.
    pub fn shard_group(&self) -> Result<ShardGroup, String> {
        match self.shard_group.as_str() {
            "world" => Ok(ShardGroup::World),
            "node" => Ok(ShardGroup::Node),
            s => match s.parse::<usize>() {
                Ok(k) if k >= 1 => Ok(ShardGroup::Ranks(k)),
                _ => Err(format!(
                    "{s:?} is not a shard group: use \"world\", \"node\" or a number of ranks (at least 1)"
                )),
            },
        }
    }
}

impl Default for ZeroConfig {
    fn default() -> Self {
        ZeroConfig {
            stage: 0,
            bucket_mb: 25.0,
            prefetch: true,
            reshard_after_forward: true,
            shard_group: "world".into(),
        }
    }
}

pub use crate::dtype::DType;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PrecisionConfig {
    /// Parameters, gradients and their communication.
    pub dtype: DType,
    /// Gradient reduction dtype ("" = same as dtype).
    pub reduce_dtype: String,
    pub loss_scale_init: f64,
    /// Clean steps before the fp16 loss scale doubles.
    pub loss_scale_window: usize,
    pub min_loss_scale: f64,
}

impl Default for PrecisionConfig {
    fn default() -> Self {
        PrecisionConfig {
            dtype: DType::Fp32,
            reduce_dtype: String::new(),
            loss_scale_init: 65536.0,
            loss_scale_window: 1000,
            min_loss_scale: 1.0,
        }
    }
}

impl PrecisionConfig {
    /// The dtype gradients are reduced in.
    pub fn reduce(&self) -> DType {
        match self.reduce_dtype.as_str() {
            "fp32" => DType::Fp32,
            "bf16" => DType::Bf16,
            "fp16" => DType::Fp16,
            _ => self.dtype,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CheckpointConfig {
    /// Directory holding one sub-directory per saved step ("" = no checkpoints).
    pub dir: String,
    /// Save every this many steps (0 = only at the end when `dir` is set).
    pub every: usize,
    /// How many checkpoints to keep up to the one just saved (0 = all).
    pub keep: usize,
    /// "" (start fresh), "auto" (resume from `dir`/latest if present, falling back past
    /// damaged checkpoints to the newest intact one) or a checkpoint path.
    pub resume: String,
    /// Write rank files on a background thread while training goes on; the commit
    /// follows at a later step boundary, once every rank has written.
    #[serde(rename = "async")]
    pub async_write: bool,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            dir: String::new(),
            every: 0,
            keep: 2,
            resume: String::new(),
            async_write: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct LogConfig {
    /// JSONL metrics file written by rank 0 ("" = none).
    pub metrics: String,
    /// Log every this many steps.
    pub every: usize,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            metrics: String::new(),
            every: 10,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct SystemConfig {
    /// "cpu", "cuda", "auto" or "sim".
    pub device: String,
    /// Compute threads per rank (GEMM).
    pub threads: usize,
    /// CUDA-aware MPI: "auto" (detect), "on" or "off". ZEROTRAIN_CUDA_AWARE overrides.
    pub cuda_aware: String,
    /// How the engine's collectives reach device memory: "auto" (NCCL where the backend
    /// has it on every rank, else MPI), "mpi" (direct with `cuda_aware = "on"`, else
    /// staged) or "nccl".
    pub collectives: String,
    /// Seconds a rank may go without progress (a collective or a step that does not
    /// finish) before the watchdog names what it waits on and aborts the job (0 = off).
    pub collective_timeout: f64,
}

impl Default for SystemConfig {
    fn default() -> Self {
        SystemConfig {
            device: "cpu".into(),
            threads: 1,
            cuda_aware: "auto".into(),
            collectives: "auto".into(),
            collective_timeout: 600.0,
        }
    }
}

impl TrainConfig {
    /// `time_limit` as a duration (`None` when unset); validated at load.
    pub fn time_limit(&self) -> Option<std::time::Duration> {
        parse_duration(&self.time_limit).ok().flatten()
    }
}

/// A duration in Slurm's formats: `[D-]HH:MM:SS`, `MM:SS`, or plain seconds; "" is none.
fn parse_duration(text: &str) -> Result<Option<std::time::Duration>, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let bad = || format!("{text:?} is not a duration: use [D-]HH:MM:SS, MM:SS or seconds");
    let (days, rest) = match t.split_once('-') {
        Some((d, r)) => (d.parse::<u64>().map_err(|_| bad())?, r),
        None => (0, t),
    };
    let parts = rest
        .split(':')
        .map(|p| p.parse::<u64>().map_err(|_| bad()))
        .collect::<Result<Vec<_>, _>>()?;
    let secs = match parts[..] {
        [s] if days == 0 => s,
        [m, s] if days == 0 => m * 60 + s,
        [h, m, s] => h * 3600 + m * 60 + s,
        _ => return Err(bad()),
    };
    let total = days * 86400 + secs;
    if total == 0 {
        return Err(format!(
            "{text:?} is zero: leave train.time_limit empty for no limit"
        ));
    }
    Ok(Some(std::time::Duration::from_secs(total)))
}

fn invalid(file: &str, key: &str, msg: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        file: file.into(),
        key: key.into(),
        msg: msg.into(),
    }
}

impl ModelConfig {
    /// The model's own checks (sizes at least 1, heads dividing the width); `file` is
    /// named in the error (a config, or a checkpoint's meta.json).
    pub fn check(&self, file: &str) -> Result<(), ConfigError> {
        let m = self;
        match m.kind {
            ModelKind::Gpt => {
                for (k, v) in [
                    ("model.n_layer", m.n_layer),
                    ("model.n_head", m.n_head),
                    ("model.d_model", m.d_model),
                    ("model.ctx", m.ctx),
                    ("model.vocab", m.vocab),
                ] {
                    if v == 0 {
                        return Err(invalid(file, k, "must be at least 1"));
                    }
                }
                if !m.d_model.is_multiple_of(m.n_head) {
                    return Err(invalid(
                        file,
                        "model.d_model",
                        format!(
                            "{} is not divisible by model.n_head = {}",
                            m.d_model, m.n_head
                        ),
                    ));
                }
            }
            ModelKind::Mlp => {
                if m.inputs == 0 || m.classes < 2 || m.hidden.contains(&0) {
                    return Err(invalid(
                        file,
                        "model",
                        "mlp needs inputs >= 1, classes >= 2 and non-zero hidden sizes",
                    ));
                }
            }
        }
        Ok(())
    }
}

impl ModelConfig {
    /// `init` is `""` or `"hf:DIR"` with a directory, on a GPT.
    fn check_init(&self, file: &str) -> Result<(), ConfigError> {
        if self.init.is_empty() {
            return Ok(());
        }
        match self.init.strip_prefix("hf:") {
            None => Err(invalid(
                file,
                "model.init",
                format!(
                    "{:?} is not an initialisation: use \"\" (seeded) or \"hf:DIR\" (a Hugging Face GPT-2 directory)",
                    self.init
                ),
            )),
            Some("") => Err(invalid(file, "model.init", "\"hf:\" names no directory")),
            Some(_) if self.kind != ModelKind::Gpt => Err(invalid(
                file,
                "model.init",
                "Hugging Face weights initialise GPT models only (model.kind = \"gpt\")",
            )),
            Some(_) => Ok(()),
        }
    }
}

impl Config {
    /// Checks that need no knowledge of the world size.
    pub(super) fn validate_static(&self, file: &str) -> Result<(), ConfigError> {
        let m = &self.model;
        let t = &self.train;
        if self.zero.stage > 3 {
            return Err(invalid(
                file,
                "zero.stage",
                format!("must be 0, 1, 2 or 3, got {}", self.zero.stage),
            ));
        }
        if let Err(why) = self.zero.shard_group() {
            return Err(invalid(file, "zero.shard_group", why));
        }
        m.check(file)?;
        m.check_init(file)?;
        if t.micro_batch == 0 {
            return Err(invalid(file, "train.micro_batch", "must be at least 1"));
        }
        if t.grad_accum == 0 {
            return Err(invalid(file, "train.grad_accum", "must be at least 1"));
        }
        let usable = |x: f64| x.is_finite() && x >= 0.0;
        if !usable(t.lr) || !usable(t.min_lr) {
            return Err(invalid(
                file,
                "train.lr",
                "lr and min_lr must be finite and non-negative",
            ));
        }
        if t.min_lr > t.lr {
            return Err(invalid(
                file,
                "train.min_lr",
                format!("{} is above train.lr = {}", t.min_lr, t.lr),
            ));
        }
        if !(t.eps.is_finite() && t.eps > 0.0) {
            return Err(invalid(
                file,
                "train.eps",
                format!("must be positive, got {}", t.eps),
            ));
        }
        // A NaN or negative value would otherwise pass silently: clipping off, or a
        // "diverged" loss that blames the learning rate.
        for (key, v) in [
            ("train.momentum", t.momentum),
            ("train.weight_decay", t.weight_decay),
            ("train.clip_grad", t.clip_grad),
        ] {
            if !usable(v) {
                return Err(invalid(
                    file,
                    key,
                    format!("must be finite and non-negative, got {v}"),
                ));
            }
        }
        if t.eval_every > 0 && t.eval_batches == 0 {
            return Err(invalid(
                file,
                "train.eval_batches",
                "must be at least 1 when train.eval_every evaluates",
            ));
        }
        if !(0.0..1.0).contains(&t.betas[0]) || !(0.0..1.0).contains(&t.betas[1]) {
            return Err(invalid(file, "train.betas", "both betas must be in [0, 1)"));
        }
        if self.zero.bucket_mb.is_nan() || self.zero.bucket_mb <= 0.0 {
            return Err(invalid(file, "zero.bucket_mb", "must be positive"));
        }
        if !matches!(
            self.precision.reduce_dtype.as_str(),
            "" | "fp32" | "bf16" | "fp16"
        ) {
            return Err(invalid(
                file,
                "precision.reduce_dtype",
                format!(
                    "must be \"fp32\", \"bf16\", \"fp16\" or empty, got {:?}",
                    self.precision.reduce_dtype
                ),
            ));
        }
        if !matches!(self.system.device.as_str(), "cpu" | "cuda" | "auto" | "sim") {
            return Err(invalid(
                file,
                "system.device",
                format!(
                    "must be \"cpu\", \"cuda\", \"auto\" or \"sim\", got {:?}",
                    self.system.device
                ),
            ));
        }
        if !matches!(self.system.collectives.as_str(), "auto" | "mpi" | "nccl") {
            return Err(invalid(
                file,
                "system.collectives",
                format!(
                    "must be \"auto\", \"mpi\" or \"nccl\", got {:?}",
                    self.system.collectives
                ),
            ));
        }
        if !matches!(self.system.cuda_aware.as_str(), "auto" | "on" | "off") {
            return Err(invalid(
                file,
                "system.cuda_aware",
                format!(
                    "must be \"auto\", \"on\" or \"off\", got {:?}",
                    self.system.cuda_aware
                ),
            ));
        }
        if !(self.system.collective_timeout.is_finite() && self.system.collective_timeout >= 0.0) {
            return Err(invalid(
                file,
                "system.collective_timeout",
                format!(
                    "must be a number of seconds >= 0 (0 = off), got {}",
                    self.system.collective_timeout
                ),
            ));
        }
        if let Err(msg) = parse_duration(&t.time_limit) {
            return Err(invalid(file, "train.time_limit", msg));
        }
        if self.system.threads == 0 {
            return Err(invalid(file, "system.threads", "must be at least 1"));
        }
        if self.data.source == DataSource::Hdf5 && self.data.path.is_empty() {
            return Err(invalid(
                file,
                "data.path",
                "source = \"hdf5\" needs a dataset directory",
            ));
        }
        if self.data.prefetch == 0 {
            return Err(invalid(file, "data.prefetch", "must be at least 1"));
        }
        Ok(())
    }

    /// Checks that depend on the world size; every rank runs them before any collective.
    pub fn validate(&self, world: usize) -> Result<(), ConfigError> {
        let t = &self.train;
        let per_step = t.micro_batch * t.grad_accum * world;
        if t.global_batch != 0 && t.global_batch != per_step {
            return Err(invalid(
                &self.source,
                "train.global_batch",
                format!(
                    "{} != micro_batch {} x grad_accum {} x world size {} = {}",
                    t.global_batch, t.micro_batch, t.grad_accum, world, per_step
                ),
            ));
        }
        if let Ok(ShardGroup::Ranks(k)) = self.zero.shard_group() {
            if !world.is_multiple_of(k) {
                return Err(invalid(
                    &self.source,
                    "zero.shard_group",
                    format!("{k} ranks per shard group do not divide the world size {world}"),
                ));
            }
        }
        Ok(())
    }

    /// Samples (sequences) in one optimizer step across all ranks.
    pub fn global_batch(&self, world: usize) -> usize {
        self.train.micro_batch * self.train.grad_accum * world
    }
}

#[cfg(test)]
mod tests {
    use super::parse_duration;

    #[test]
    fn durations_in_slurm_formats() {
        let secs = |t: &str| parse_duration(t).map(|d| d.map(|d| d.as_secs()));
        assert_eq!(secs(""), Ok(None));
        assert_eq!(secs("90"), Ok(Some(90)));
        assert_eq!(secs("02:30"), Ok(Some(150)));
        assert_eq!(secs("01:00:05"), Ok(Some(3605)));
        assert_eq!(secs("2-00:00:01"), Ok(Some(2 * 86400 + 1)));
        for bad in ["1h", "1:2:3:4", "-5", "2-30", "0", "00:00:00", "1.5"] {
            assert!(parse_duration(bad).is_err(), "{bad} accepted");
        }
    }
}
