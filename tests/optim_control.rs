//! Learning-rate schedule, dynamic loss scaler, gradient-norm helpers.
use zerotrain::config::{DType, PrecisionConfig, Schedule, TrainConfig};
use zerotrain::optim::{clip_coef, has_non_finite, lr_at, sum_squares, LossScaler, ScalerError};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1.0)
}

#[test]
fn cosine_schedule_warmup_peak_end() {
    let c = TrainConfig {
        lr: 6e-4,
        min_lr: 6e-5,
        warmup: 10,
        schedule: Schedule::Cosine,
        steps: 110,
        decay_steps: 0, // => steps
        ..TrainConfig::default()
    };
    // Warm-up: lr·(it+1)/(warmup+1).
    assert!(close(lr_at(&c, 0), 6e-4 / 11.0));
    assert!(close(lr_at(&c, 4), 6e-4 * 5.0 / 11.0));
    assert!(close(lr_at(&c, 9), 6e-4 * 10.0 / 11.0));
    // Peak right after warm-up, midpoint of the cosine, the floor at and after the end.
    assert!(close(lr_at(&c, 10), 6e-4));
    assert!(close(lr_at(&c, 60), 6e-5 + 0.5 * (6e-4 - 6e-5)));
    assert!(close(lr_at(&c, 110), 6e-5));
    assert!(close(lr_at(&c, 500), 6e-5));
    // Quarter point: coeff = (1 + cos(π/4))/2.
    let q = 0.5 * (1.0 + (std::f64::consts::PI / 4.0).cos());
    assert!(close(lr_at(&c, 35), 6e-5 + q * (6e-4 - 6e-5)));
    // Monotone non-increasing after the peak.
    for s in 10..120 {
        assert!(lr_at(&c, s + 1) <= lr_at(&c, s), "rises at step {s}");
    }
    // An explicit decay_steps overrides steps.
    let d = TrainConfig {
        decay_steps: 60,
        ..c.clone()
    };
    assert!(close(lr_at(&d, 35), 6e-5 + 0.5 * (6e-4 - 6e-5)));
    assert!(close(lr_at(&d, 60), 6e-5));
}

#[test]
fn constant_schedule_with_and_without_warmup() {
    let c = TrainConfig {
        lr: 1e-3,
        warmup: 0,
        schedule: Schedule::Constant,
        ..TrainConfig::default()
    };
    assert!(close(lr_at(&c, 0), 1e-3) && close(lr_at(&c, 1000), 1e-3));
    let w = TrainConfig { warmup: 3, ..c };
    assert!(
        close(lr_at(&w, 0), 0.25e-3) && close(lr_at(&w, 2), 0.75e-3) && close(lr_at(&w, 3), 1e-3)
    );
}

#[test]
fn cosine_with_decay_not_after_warmup_goes_to_floor() {
    // decay_steps <= warmup: no cosine segment; no division by zero.
    let c = TrainConfig {
        lr: 1.0,
        min_lr: 0.1,
        warmup: 5,
        decay_steps: 5,
        schedule: Schedule::Cosine,
        ..TrainConfig::default()
    };
    assert!(close(lr_at(&c, 4), 5.0 / 6.0));
    assert!(close(lr_at(&c, 5), 0.1));
}

#[test]
fn loss_scaler_doubles_halves_and_hits_floor() {
    let mut s = LossScaler::dynamic(65536.0, 3, 1024.0).unwrap();
    assert_eq!(s.scale(), 65536.0);
    for _ in 0..2 {
        s.update(false).unwrap();
    }
    assert_eq!(s.scale(), 65536.0, "doubled before the window");
    s.update(false).unwrap();
    assert_eq!(s.scale(), 131072.0, "window of clean steps doubles");
    s.update(false).unwrap();
    s.update(true).unwrap();
    assert_eq!(s.scale(), 65536.0, "overflow halves");
    assert_eq!(s.good_steps(), 0, "overflow restarts the window");
    s.update(false).unwrap();
    s.update(false).unwrap();
    assert_eq!(s.scale(), 65536.0);
    // Halve down to the floor (65536 -> 1024 is 6 halvings), then one more fails.
    for _ in 0..6 {
        s.update(true).unwrap();
    }
    assert_eq!(s.scale(), 1024.0);
    let e = s.update(true).unwrap_err();
    assert_eq!(e, ScalerError::Floor { floor: 1024.0 });
    let msg = e.to_string();
    assert!(
        msg.contains("floor") && msg.contains("precision.dtype = \"bf16\""),
        "{msg}"
    );
    assert_eq!(s.scale(), 1024.0, "scale unchanged on error");
}

#[test]
fn loss_scaler_round_trips_through_serde() {
    let mut s = LossScaler::dynamic(8.0, 5, 1.0).unwrap();
    s.update(false).unwrap();
    s.update(true).unwrap();
    s.update(false).unwrap();
    let json = serde_json::to_string(&s).unwrap();
    let back: LossScaler = serde_json::from_str(&json).unwrap();
    assert_eq!(back, s);
    assert_eq!((back.scale(), back.good_steps()), (4.0, 1));
}

#[test]
fn disabled_scaler_never_changes() {
    let mut s = LossScaler::disabled();
    for i in 0..50 {
        s.update(i % 2 == 0).unwrap();
    }
    assert_eq!(s.scale(), 1.0);
    assert!(!s.is_enabled());
    let bf16 = PrecisionConfig {
        dtype: DType::Bf16,
        ..PrecisionConfig::default()
    };
    assert_eq!(
        LossScaler::from_config(&bf16).unwrap(),
        LossScaler::disabled()
    );
    let fp16 = PrecisionConfig {
        dtype: DType::Fp16,
        ..PrecisionConfig::default()
    };
    let s = LossScaler::from_config(&fp16).unwrap();
    assert!(s.is_enabled());
    assert_eq!(s.scale(), 65536.0);
}

#[test]
fn bad_scaler_settings_name_the_key() {
    let bad = [
        (
            PrecisionConfig {
                loss_scale_window: 0,
                ..fp16()
            },
            "loss_scale_window",
        ),
        (
            PrecisionConfig {
                min_loss_scale: 0.0,
                ..fp16()
            },
            "min_loss_scale",
        ),
        (
            PrecisionConfig {
                loss_scale_init: 0.5,
                ..fp16()
            },
            "loss_scale_init",
        ),
        (
            PrecisionConfig {
                loss_scale_init: f64::INFINITY,
                ..fp16()
            },
            "loss_scale_init",
        ),
    ];
    for (p, key) in bad {
        let e = LossScaler::from_config(&p).unwrap_err().to_string();
        assert!(e.contains(&format!("precision.{key}")), "{e}");
    }
}

fn fp16() -> PrecisionConfig {
    PrecisionConfig {
        dtype: DType::Fp16,
        ..PrecisionConfig::default()
    }
}

#[test]
fn sum_squares_in_f64() {
    let x: Vec<f32> = (0..1001).map(|i| (i as f32) * 0.5 - 100.0).collect();
    let want: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
    // Lane-wise f64 accumulation differs from the sequential sum only by f64 rounding.
    assert!((sum_squares(&x) - want).abs() <= 1e-12 * want);
    assert_eq!(sum_squares(&[]), 0.0);
    assert_eq!(sum_squares(&[3.0, 4.0]), 25.0);
    // Partial sums over shards add up to the whole (the global-norm all-reduce).
    let (a, b) = x.split_at(333);
    assert!((sum_squares(a) + sum_squares(b) - want).abs() <= 1e-12 * want);
    // f64 accumulation: 1e6 values of 1e-4 would lose digits in f32.
    let small = vec![1e-4f32; 1_000_000];
    assert!((sum_squares(&small) - 1e6 * (1e-4f32 as f64).powi(2)).abs() < 1e-12);
}

#[test]
fn non_finite_detection() {
    let mut x = vec![1.0f32; 10_000];
    assert!(!has_non_finite(&x));
    x[0] = f32::MAX;
    assert!(!has_non_finite(&x), "MAX is finite");
    for bad in [f32::INFINITY, f32::NEG_INFINITY, f32::NAN] {
        for at in [0, 4095, 4096, 9999] {
            let mut y = x.clone();
            y[at] = bad;
            assert!(has_non_finite(&y), "{bad} at {at} missed");
        }
    }
    assert!(!has_non_finite(&[]));
}

#[test]
fn clip_coef_like_torch() {
    assert_eq!(clip_coef(0.5, 1.0), 1.0, "below max: no clipping");
    assert_eq!(clip_coef(10.0, 0.0), 1.0, "max_norm 0 disables clipping");
    let c = clip_coef(10.0, 1.0);
    assert!((c as f64 - 1.0 / (10.0 + 1e-6)).abs() < 1e-7);
    // Clipped gradients have norm max_norm (up to the 1e-6 guard).
    let g = [3.0f32, 4.0];
    let c = clip_coef(sum_squares(&g).sqrt(), 1.0);
    let clipped: Vec<f32> = g.iter().map(|v| v * c).collect();
    assert!((sum_squares(&clipped).sqrt() - 1.0).abs() < 1e-6);
    assert_eq!(clip_coef(f64::INFINITY, 1.0), 0.0);
}
