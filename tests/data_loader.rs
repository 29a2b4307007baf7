//! The loader against real HDF5 files written by the real binary: world-size-independent
//! batches, each window exactly once per epoch, exact state save/restore, synthetic source.
mod data_common;
use data_common::*;
use std::collections::BTreeSet;
use zerotrain::config::{DataConfig, ModelConfig, ModelKind, Sampling};
use zerotrain::data::{open_sampler, open_source, Batch, LoaderState, Manifest, SampleRef, Split};

const CTX: usize = 16;
/// Samples per global micro-batch; divisible by 1, 2, 3 and 4.
const GB: usize = 12;
/// 4 shards of 481 tokens = 30 windows of ctx + 1 at stride ctx each: 120 windows,
/// exactly 10 global batches per epoch.
const TEXT_LEN: usize = 4 * (30 * CTX + 1);

/// Concatenates the ranks' micro-batches into the global one (rank order).
fn concat(parts: &[Batch]) -> Batch {
    let mut out = parts[0].clone();
    for p in &parts[1..] {
        match (&mut out, p) {
            (
                Batch::Tokens {
                    b, inputs, targets, ..
                },
                Batch::Tokens {
                    b: b2,
                    inputs: i2,
                    targets: t2,
                    ..
                },
            ) => {
                *b += b2;
                inputs.extend_from_slice(i2);
                targets.extend_from_slice(t2);
            }
            (
                Batch::Features { b, x, y, .. },
                Batch::Features {
                    b: b2,
                    x: x2,
                    y: y2,
                    ..
                },
            ) => {
                *b += b2;
                x.extend_from_slice(x2);
                y.extend_from_slice(y2);
            }
            _ => panic!("mixed batch kinds"),
        }
    }
    out
}

/// Checks that `batch` holds exactly the windows `refs` of the token stream `ids`.
fn assert_windows(batch: &Batch, refs: &[SampleRef], ids: &[u32], starts: &[u64]) {
    let Batch::Tokens {
        b,
        t,
        inputs,
        targets,
    } = batch
    else {
        panic!("not tokens")
    };
    assert_eq!((*b, *t), (refs.len(), CTX));
    for (j, r) in refs.iter().enumerate() {
        let s = (starts[r.shard] + r.offset) as usize;
        assert_eq!(
            &inputs[j * CTX..(j + 1) * CTX],
            &ids[s..s + CTX],
            "inputs of {r:?}"
        );
        assert_eq!(
            &targets[j * CTX..(j + 1) * CTX],
            &ids[s + 1..s + CTX + 1],
            "targets of {r:?}"
        );
    }
}

#[test]
fn epoch_mode_round_trip_at_world_sizes_1_to_4() {
    let tmp = tempfile::tempdir().unwrap();
    let text = make_text(TEXT_LEN, 1);
    let ds = prepare(tmp.path(), &text, 4, 0.0);
    let m = Manifest::load(&ds).unwrap();
    assert_eq!(m.split(Split::Train).len(), 4);
    let ids = encode(&m, &text);
    let starts = shard_starts(&m);
    let cfg = hdf5_cfg(&ds, Sampling::Epoch);
    let model = gpt(m.vocab_size, CTX);
    let every_window: BTreeSet<SampleRef> = (0..4)
        .flat_map(|s| {
            (0..30).map(move |k| SampleRef {
                shard: s,
                offset: (k * CTX) as u64,
            })
        })
        .collect();
    let bpe = 10;
    let mut reference: Option<Vec<Vec<SampleRef>>> = None;
    for world in 1..=4 {
        let mb = GB / world;
        // global[g]: the samples of global micro-batch g, ranks concatenated in order.
        let mut global = vec![Vec::new(); 2 * bpe];
        for rank in 0..world {
            let sp = spec(rank, world, mb, CTX, 7, Sampling::Epoch);
            let (_, mut sampler) = open_sampler(&ds, &sp, None).unwrap();
            assert_eq!(sampler.batches_per_epoch(), bpe as u64);
            let mut src = open_source(&cfg, &model, sp, None).unwrap();
            for g in global.iter_mut() {
                let refs = sampler.next_refs();
                assert_windows(&src.next_batch().unwrap(), &refs, &ids, &starts);
                g.extend(refs);
            }
            assert!(src.wait_ms().is_finite() && src.wait_ms() >= 0.0);
        }
        for e in 0..2 {
            let epoch: Vec<SampleRef> = global[e * bpe..(e + 1) * bpe].concat();
            let set: BTreeSet<SampleRef> = epoch.iter().copied().collect();
            assert_eq!(epoch.len(), 120, "world {world} epoch {e}");
            assert_eq!(
                set, every_window,
                "world {world} epoch {e}: every window exactly once"
            );
        }
        assert_ne!(global[..bpe], global[bpe..], "epochs are reshuffled");
        match &reference {
            None => reference = Some(global),
            Some(r) => assert_eq!(r, &global, "world {world} sees other data than world 1"),
        }
    }
    // Same seed, same batches (above, across world sizes); another seed, another order.
    let (_, mut other) = open_sampler(&ds, &spec(0, 1, GB, CTX, 8, Sampling::Epoch), None).unwrap();
    assert_ne!(reference.unwrap()[0], other.next_refs());
}

#[test]
fn random_mode_is_world_size_independent_and_in_bounds() {
    let tmp = tempfile::tempdir().unwrap();
    let text = make_text(3000, 2);
    let ds = prepare(tmp.path(), &text, 3, 0.1);
    let m = Manifest::load(&ds).unwrap();
    let ids = encode(&m, &text);
    let starts = shard_starts(&m);
    let cfg = hdf5_cfg(&ds, Sampling::Random);
    let model = gpt(m.vocab_size, CTX);
    let batches = |world: usize, seed: u64| -> Vec<Batch> {
        let mut srcs: Vec<_> = (0..world)
            .map(|r| {
                let sp = spec(r, world, GB / world, CTX, seed, Sampling::Random);
                open_source(&cfg, &model, sp, None).unwrap()
            })
            .collect();
        (0..6)
            .map(|_| {
                concat(
                    &srcs
                        .iter_mut()
                        .map(|s| s.next_batch().unwrap())
                        .collect::<Vec<_>>(),
                )
            })
            .collect()
    };
    let one = batches(1, 3);
    assert_eq!(one, batches(3, 3));
    assert_eq!(one, batches(4, 3));
    assert_ne!(one, batches(1, 4));
    let (_, mut s) = open_sampler(&ds, &spec(0, 1, GB, CTX, 3, Sampling::Random), None).unwrap();
    for b in &one {
        let refs = s.next_refs();
        for r in &refs {
            assert!(
                r.offset + (CTX as u64) < m.shards[r.shard].count,
                "window fits its shard"
            );
        }
        assert_windows(b, &refs, &ids, &starts);
    }
}

/// Runs `steps` batches of rank `rank` of `world` and returns them with the state after.
fn run(
    cfg: &DataConfig,
    model: &ModelConfig,
    sp: zerotrain::data::LoaderSpec,
    resume: Option<LoaderState>,
    steps: usize,
) -> (Vec<Batch>, LoaderState) {
    let mut src = open_source(cfg, model, sp, resume).unwrap();
    let b = (0..steps).map(|_| src.next_batch().unwrap()).collect();
    (b, src.state())
}

fn check_resume(cfg: &DataConfig, model: &ModelConfig, sampling: Sampling) {
    let sp = |rank, world| spec(rank, world, GB / world, CTX, 11, sampling);
    // Uninterrupted: 25 global batches at world 1 (crosses two epoch boundaries).
    let (full, _) = run(cfg, model, sp(0, 1), None, 25);
    // Interrupted at world 2 after 13 batches; the state goes through JSON.
    let (_, st) = run(cfg, model, sp(1, 2), None, 13);
    assert_eq!(st.batches, 13);
    let st: LoaderState = serde_json::from_str(&serde_json::to_string(&st).unwrap()).unwrap();
    for world in [2, 4] {
        let parts: Vec<Vec<Batch>> = (0..world)
            .map(|r| run(cfg, model, sp(r, world), Some(st), 12).0)
            .collect();
        for k in 0..12 {
            let got = concat(&parts.iter().map(|p| p[k].clone()).collect::<Vec<_>>());
            assert_eq!(
                got,
                full[13 + k],
                "{sampling:?}: resumed at world {world}, batch {}",
                13 + k
            );
        }
    }
}

#[test]
fn state_save_and_restore_is_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = prepare(tmp.path(), &make_text(TEXT_LEN, 3), 4, 0.0);
    let m = Manifest::load(&ds).unwrap();
    for sampling in [Sampling::Epoch, Sampling::Random] {
        check_resume(&hdf5_cfg(&ds, sampling), &gpt(m.vocab_size, CTX), sampling);
    }
    // The synthetic source follows the same rules.
    let syn = DataConfig::default();
    check_resume(&syn, &gpt(50, CTX), Sampling::Random);
    // A saved position of the other sampling mode is refused with a clear message.
    let (_, st) = run(
        &hdf5_cfg(&ds, Sampling::Random),
        &gpt(m.vocab_size, CTX),
        spec(0, 1, 4, CTX, 1, Sampling::Random),
        None,
        2,
    );
    let err = open_source(
        &hdf5_cfg(&ds, Sampling::Epoch),
        &gpt(m.vocab_size, CTX),
        spec(0, 1, 4, CTX, 1, Sampling::Epoch),
        Some(st),
    )
    .err()
    .unwrap();
    assert!(format!("{err:#}").contains("data.sampling"), "{err:#}");
}

#[test]
fn synthetic_source_tokens_and_features() {
    let cfg = DataConfig::default();
    let tok = gpt(37, 8);
    let get = |model: &ModelConfig, rank, world, split| {
        let mut sp = spec(rank, world, 6 / world, 8, 5, Sampling::Random);
        sp.split = split;
        let mut s = open_source(&cfg, model, sp, None).unwrap();
        (0..3).map(|_| s.next_batch().unwrap()).collect::<Vec<_>>()
    };
    let one = get(&tok, 0, 1, Split::Train);
    let two: Vec<Batch> = (0..3)
        .map(|k| {
            concat(&[
                get(&tok, 0, 2, Split::Train)[k].clone(),
                get(&tok, 1, 2, Split::Train)[k].clone(),
            ])
        })
        .collect();
    assert_eq!(one, two);
    assert_ne!(one, get(&tok, 0, 1, Split::Val));
    for b in &one {
        let Batch::Tokens {
            b,
            t,
            inputs,
            targets,
        } = b
        else {
            panic!()
        };
        assert_eq!((*b, *t), (6, 8));
        assert!(inputs.iter().chain(targets).all(|&v| v < 37));
        assert_eq!(
            &inputs[1..8],
            &targets[0..7],
            "targets are inputs shifted by one"
        );
    }
    let mlp = ModelConfig {
        kind: ModelKind::Mlp,
        inputs: 5,
        classes: 3,
        ..ModelConfig::default()
    };
    let f = get(&mlp, 0, 1, Split::Train);
    let f2 = concat(&[
        get(&mlp, 0, 3, Split::Train)[1].clone(),
        get(&mlp, 1, 3, Split::Train)[1].clone(),
        get(&mlp, 2, 3, Split::Train)[1].clone(),
    ]);
    assert_eq!(f[1], f2);
    let Batch::Features { b, d, x, y } = &f[0] else {
        panic!()
    };
    assert_eq!((*b, *d, x.len()), (6, 5, 30));
    assert!(y.iter().all(|&c| c < 3));
}

#[test]
fn classify_dataset_epoch_covers_every_row_once() {
    let tmp = tempfile::tempdir().unwrap();
    let ds = tmp.path().join("cls");
    let d = ds.to_str().unwrap();
    zt_ok(&[
        "data",
        "synth",
        "--task",
        "classify",
        "--out",
        d,
        "--count",
        "60",
        "--val-count",
        "10",
        "--features",
        "5",
        "--classes",
        "3",
        "--shards",
        "2",
    ]);
    let mlp = ModelConfig {
        kind: ModelKind::Mlp,
        inputs: 5,
        classes: 3,
        ..ModelConfig::default()
    };
    let cfg = hdf5_cfg(&ds, Sampling::Epoch);
    let mut rows = BTreeSet::new();
    let mut by_world = Vec::new();
    for world in [1, 2] {
        let mut batches = Vec::new();
        for rank in 0..world {
            let sp = spec(rank, world, 12 / world, 0, 4, Sampling::Epoch);
            let (_, mut s) = open_sampler(&ds, &sp, None).unwrap();
            let mut src = open_source(&cfg, &mlp, sp, None).unwrap();
            for g in 0..5 {
                rows.extend(s.next_refs());
                let b = src.next_batch().unwrap();
                let Batch::Features { d, y, .. } = &b else {
                    panic!()
                };
                assert!(*d == 5 && y.iter().all(|&c| c < 3));
                if rank == 0 {
                    batches.push(vec![b])
                } else {
                    batches[g].push(b)
                }
            }
        }
        by_world.push(batches.iter().map(|p| concat(p)).collect::<Vec<_>>());
    }
    assert_eq!(
        rows.len(),
        60,
        "5 batches of 12 = every one of the 60 train rows"
    );
    assert_eq!(by_world[0], by_world[1]);
}
