"""Named pipelines: the recipes people type most, as plain step lists."""

from __future__ import annotations

IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]
CIFAR_MEAN = [0.4914, 0.4822, 0.4465]
CIFAR_STD = [0.2470, 0.2435, 0.2616]


# The speech front end: 25 ms windows every 10 ms at 16 kHz, 80 mel bands
LOG_MEL = {"op": "log_mel", "sample_rate": 16000, "n_fft": 400, "hop_length": 160, "n_mels": 80}

# (W, F, mF, T, p, mT) from Park et al. 2019, Table 1
SPEC_AUGMENT_POLICIES = {
    "LB": (80, 27, 1, 100, 1.0, 1),
    "LD": (80, 27, 2, 100, 1.0, 2),
    "SM": (40, 15, 2, 70, 0.2, 2),
    "SS": (40, 27, 2, 70, 0.2, 2),
}


def _spec_augment(w: int, f: int, mf: int, t: int, p: float, mt: int) -> list[dict]:
    return [{"op": "spec_time_warp", "W": w}, {"op": "freq_mask", "F": f, "count": mf},
            {"op": "time_mask", "T": t, "p": p, "count": mt}]


def _imagenet_train(policy: dict, erasing: float) -> list[dict]:
    steps = [{"op": "random_resized_crop", "size": 224}, {"op": "hflip", "p": 0.5}, policy]
    if erasing:
        steps.append({"op": "random_erasing", "p": erasing})
    return steps + [{"op": "normalize", "mean": IMAGENET_MEAN, "std": IMAGENET_STD}]


def _cifar_train(policy: dict) -> list[dict]:
    return [
        {"op": "random_crop", "size": 32, "padding": 4},
        {"op": "hflip", "p": 0.5},
        policy,
        {"op": "normalize", "mean": CIFAR_MEAN, "std": CIFAR_STD},
    ]


PRESETS: dict[str, tuple[str, list[dict]]] = {
    "imagenet-randaug": ("ImageNet training: crop, flip, RandAugment n2 m9, erasing 0.25",
                         _imagenet_train({"op": "rand_augment", "n": 2, "m": 9}, 0.25)),
    "imagenet-trivial": ("ImageNet training: crop, flip, TrivialAugmentWide, erasing 0.1",
                         _imagenet_train({"op": "trivial_augment"}, 0.1)),
    "imagenet-autoaug": ("ImageNet training: crop, flip, AutoAugment ImageNet policy",
                         _imagenet_train({"op": "auto_augment", "policy": "imagenet"}, 0.0)),
    "imagenet-eval": ("ImageNet evaluation: resize 256, centre crop 224, normalize",
                      [{"op": "resize", "size": 256}, {"op": "center_crop", "size": 224},
                       {"op": "normalize", "mean": IMAGENET_MEAN, "std": IMAGENET_STD}]),
    "cifar-randaug": ("CIFAR training: pad-4 crop, flip, RandAugment n2 m9",
                      _cifar_train({"op": "rand_augment", "n": 2, "m": 9})),
    "cifar-trivial": ("CIFAR training: pad-4 crop, flip, TrivialAugmentWide",
                      _cifar_train({"op": "trivial_augment"})),
    "cifar-autoaug": ("CIFAR training: pad-4 crop, flip, AutoAugment CIFAR-10 policy",
                      _cifar_train({"op": "auto_augment", "policy": "cifar10"})),
    **{f"specaugment-{name}": (f"SpecAugment {name} (Park et al. 2019): W={w} F={f} mF={mf} T={t} p={p} mT={mt}",
                               _spec_augment(w, f, mf, t, p, mt))
       for name, (w, f, mf, t, p, mt) in SPEC_AUGMENT_POLICIES.items()},
    "specaugment-LD-adaptive": ("SpecAugment LD with adaptive time masks (Park et al. 2020): "
                                "up to 20 masks, pM=0.04, pS=0.04",
                                [{"op": "spec_time_warp", "W": 80}, {"op": "freq_mask", "F": 27, "count": 2},
                                 {"op": "time_mask", "T": 100, "count": 20, "adaptive_count": 0.04,
                                  "adaptive_size": 0.04}]),
    "speech-perturb": ("Speech at 16 kHz: speed 0.9/1.0/1.1, noise 5-20 dB, reverb, then log-mel (80) and "
                       "SpecAugment masks (F=27 x2, T<=20% x2)",
                       [{"op": "speed", "factors": [0.9, 1.0, 1.1], "p": 1.0},
                        {"op": "noise", "min_snr_db": 5.0, "max_snr_db": 20.0, "color": "white", "p": 0.5},
                        {"op": "reverb", "min_rt60": 0.2, "max_rt60": 0.8, "p": 0.5},
                        LOG_MEL, {"op": "freq_mask", "F": 27, "count": 2},
                        {"op": "time_mask", "T": 100, "p": 0.2, "count": 2}]),
    "sound-classify": ("Sound classification waveforms: gain, shift, pink noise, pitch shift, time stretch",
                       [{"op": "gain", "min_gain_db": -12.0, "max_gain_db": 6.0, "p": 0.5},
                        {"op": "time_shift", "max_shift": 0.5, "p": 0.5},
                        {"op": "noise", "min_snr_db": 3.0, "max_snr_db": 30.0, "color": "pink", "p": 0.5},
                        {"op": "pitch_shift", "min_semitones": -4.0, "max_semitones": 4.0, "p": 0.5},
                        {"op": "time_stretch", "min_rate": 0.8, "max_rate": 1.25, "p": 0.5}]),
    "timeseries-um": ("Time series (Um et al. 2017): jitter, scaling, magnitude warp, time warp",
                      [{"op": "jitter", "sigma": 0.03}, {"op": "scaling", "sigma": 0.1},
                       {"op": "magnitude_warp", "sigma": 0.2, "knots": 4}, {"op": "time_warp", "sigma": 0.2, "knots": 4}]),
    "timeseries": ("Time series (Iwana & Uchida 2021's best for CNNs): window warp (10% by 0.5 or 2) or window slice "
                   "(90%), one per sample, p=0.8",
                   [{"op": "window_warp_or_slice", "warp_ratio": 0.1, "scales": [0.5, 2.0], "slice_ratio": 0.9,
                     "p": 0.8}]),
}
