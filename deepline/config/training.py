"""The ``train`` section: the loop's settings and those of the methods that change it
(schedules, early stopping, checkpoints, adversarial training, DP-SGD)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from deepline.config.base import Section
from deepline.registry import ATTACKS


class ScheduleConfig(Section):
    name: Literal["constant", "step", "cosine", "onecycle"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    step_size: int = Field(1, ge=1, description="epochs between decays, for 'step'")
    gamma: float = Field(0.1, gt=0.0, le=1.0, description="decay factor, for 'step'")
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0, description="final lr / peak lr")
    pct_start: float = Field(0.25, gt=0.0, lt=1.0, description="rising part, for 'onecycle'")
    anneal: Literal["cos", "linear"] = Field(
        "cos", description="the falling part's shape, for 'cosine'-like decays and 'onecycle'"
    )


class EarlyStoppingConfig(Section):
    monitor: str = "val/loss"
    mode: Literal["min", "max"] = "min"
    patience: int = Field(3, ge=1)
    min_delta: float = Field(0.0, ge=0.0)
    target: float | None = Field(
        None, description="also stop as soon as the monitored metric reaches this value "
        "(at least it for 'max', at most for 'min'), e.g. a policy's solved return",
    )  # fmt: skip


class NonFiniteConfig(Section):
    """What to do when a loss or gradient is NaN or infinite (checked before each update)."""

    policy: Literal["skip", "rollback", "stop"] = Field(
        "stop", description="skip the update, reload the last checkpoint, or stop with an error"
    )
    max_skips: int = Field(5, ge=1, description="'skip': stop after this many in a row")
    lr_factor: float = Field(0.5, gt=0.0, le=1.0, description="'rollback': lr multiplier")
    max_rollbacks: int = Field(3, ge=1, description="'rollback': stop after this many")


class CheckpointConfig(Section):
    every_steps: int | None = Field(None, ge=1, description="also save inside an epoch")
    keep_last: int = Field(2, ge=1)
    monitor: str = Field("val/loss", description="metric that picks the best checkpoint")
    mode: Literal["min", "max"] = "min"


class AdversarialConfig(Section):
    """Adversarial training: every training batch is attacked before the model learns from it
    (Madry et al. 2018 with ``attack: pgd``; Wong et al. 2020's fast FGSM with ``attack: fgsm``
    and ``random_start: true``). Epsilon is in the codec's unit space (pixels in [0, 1])."""

    attack: str = Field("pgd", description="a registered attack: fgsm or pgd")
    eps: float = Field(
        ..., ge=0.0, allow_inf_nan=False, description="radius of the ball around each input"
    )
    norm: Literal["linf", "l2"] = "linf"
    alpha: float | None = Field(
        None, gt=0.0, allow_inf_nan=False,
        description="step size; default fgsm 1.25 eps (eps without a random start), pgd "
        "2.5 eps / steps",
    )  # fmt: skip
    steps: int = Field(10, ge=1, description="pgd steps per batch")
    random_start: bool = Field(True, description="start from a uniform point of the ball")
    noise: float = Field(
        1.0, gt=0.0, le=4.0, allow_inf_nan=False,
        description="fgsm: the random start's radius in multiples of eps (N-FGSM, de Jorge et "
        "al. 2022: 2, with alpha = eps and project false)",
    )  # fmt: skip
    project: bool = Field(
        True, description="fgsm: project the step back onto the eps ball (false: N-FGSM)"
    )
    ramp_epochs: float = Field(
        0.0, ge=0.0, description="epsilon (and alpha) grow linearly from 0 over these epochs"
    )
    validate_examples: int = Field(
        0, ge=0, description="after each validation, PGD accuracy at eps on this many "
        "validation examples, logged as val/robust_accuracy (monitor it to keep the most "
        "robust checkpoint: early stopping against catastrophic overfitting)",
    )  # fmt: skip
    validate_steps: int = Field(10, ge=1, description="PGD steps of that check")

    @field_validator("attack")
    @classmethod
    def _known_attack(cls, value: str) -> str:
        if value not in ATTACKS:
            raise ValueError(ATTACKS.unknown_message(value))
        return value

    @model_validator(mode="after")
    def _single_step_options(self) -> AdversarialConfig:
        wider, unprojected = self.noise != 1.0, not self.project
        if (wider or unprojected) and not (
            self.attack == "fgsm" and self.norm == "linf" and self.random_start
        ):
            field = "noise" if wider else "project"
            raise ValueError(
                f"train.adversarial.{field} shapes the random start of fast FGSM (attack fgsm, "
                f"norm linf, random_start true); this attack is {self.attack}, norm "
                f"{self.norm}, random_start {str(self.random_start).lower()}"
            )
        return self


class MixupConfig(Section):
    """Mixup (Zhang et al. 2018): the model learns from ``lam * x_i + (1 - lam) * x_j`` for
    pairs of a batch's examples, against ``lam`` times the task's loss for ``i``'s target plus
    ``1 - lam`` times that for ``j``'s; ``lam ~ Beta(alpha, alpha)``, one draw per batch."""

    alpha: float = Field(
        0.2, gt=0.0, allow_inf_nan=False, description="of the Beta(alpha, alpha) that ``lam`` "
        "is drawn from: small values mix little (0.2 to 0.4 in the paper), 1 mixes uniformly",
    )  # fmt: skip


class PrivacyConfig(Section):
    """Differentially private training (DP-SGD, Opacus): Poisson-sampled batches, each
    example's gradient clipped to ``max_grad_norm``, Gaussian noise added; the accountant
    tracks (epsilon, delta) with respect to one training example."""

    target_epsilon: float | None = Field(
        None, gt=0.0, allow_inf_nan=False,
        description="the epsilon to reach at the end of training (the noise is chosen for it)",
    )  # fmt: skip
    noise_multiplier: float | None = Field(
        None, gt=0.0, allow_inf_nan=False, description="noise std / max_grad_norm, given directly"
    )
    delta: float = Field(1e-5, gt=0.0, lt=1.0, description="usually below 1 / training examples")
    max_grad_norm: float = Field(1.0, gt=0.0, allow_inf_nan=False, description="per example")
    accountant: Literal["rdp", "prv"] = Field(
        "rdp", description="the headline accountant (the other is reported alongside)"
    )

    @model_validator(mode="after")
    def _one_way_to_set_noise(self) -> PrivacyConfig:
        if (self.target_epsilon is None) == (self.noise_multiplier is None):
            raise ValueError("give train.privacy.target_epsilon or noise_multiplier (one)")
        return self


class SemiSupervisedConfig(Section):
    """Learning from unlabelled images too (``data.labels_per_class`` makes them): FixMatch
    (Sohn et al. 2020: a weakly augmented view's confident prediction is the target of a
    strongly augmented view) or plain pseudo-labelling (Lee 2013: the confident prediction is
    the target of the same view)."""

    name: Literal["fixmatch", "pseudo_label"] = "fixmatch"
    threshold: float = Field(0.95, gt=0.0, lt=1.0, description="confidence that makes a target")
    mu: int = Field(7, ge=1, description="unlabelled images per labelled one in a batch")
    weight: float = Field(1.0, ge=0.0, description="of the unlabelled loss (lambda_u)")
    strong_ops: int = Field(2, ge=1, le=12, description="fixmatch: RandAugment operations")
    cutout: float = Field(0.5, ge=0.0, le=1.0, description="fixmatch: largest Cutout side")


class ContrastiveConfig(Section):
    """SimCLR-style contrastive pre-training (Chen et al. 2020): two RandAugment views of each
    unlabelled image are pulled together and pushed from the batch's other images (NT-Xent) in
    the space of the model's last hidden layer; the labels are not used. The run's encoder then
    starts a classifier (``model.init_from``), probed linearly (``model.freeze``) or fine-tuned."""

    name: Literal["simclr"] = "simclr"
    temperature: float = Field(0.5, gt=0.0, description="of the NT-Xent softmax")
    strong_ops: int = Field(2, ge=1, le=12, description="RandAugment operations per view")
    cutout: float = Field(0.3, ge=0.0, le=1.0, description="largest Cutout side")


class DistillConfig(Section):
    """Knowledge distillation (Hinton et al. 2015): the loss is ``alpha * T^2 *
    KL(teacher's softened outputs || student's)`` plus ``(1 - alpha)`` of the task's own loss
    on the labels. The teacher is another run or bundle of the same classes, in inference
    mode."""

    teacher: str = Field(
        ..., description="the teacher: a run folder (its best checkpoint) or an exported "
        "bundle (its model.onnx, on ONNX Runtime)",
    )  # fmt: skip
    temperature: float = Field(4.0, gt=0.0, allow_inf_nan=False, description="T, softening")
    alpha: float = Field(0.9, ge=0.0, le=1.0, description="weight of the soft targets")
    features: float = Field(
        0.0, ge=0.0, allow_inf_nan=False, description="weight of feature matching: the "
        "student's features (the input of its output layer) learn the teacher's similarities "
        "between the batch's examples (Tung & Mori 2019), whatever the two widths; 0 is off. "
        "Needs a teacher run (a bundle's model.onnx gives only outputs)",
    )  # fmt: skip
    cache: bool = Field(
        False, description="run the teacher once per training example before training and "
        "keep its outputs (and features), instead of on every batch; not with data.augment, "
        "whose views the cache has not seen",
    )  # fmt: skip


class PruneConfig(Section):
    """Magnitude pruning of the weights of convolutions and linear layers
    (``torch.nn.utils.prune``): the smallest ``amount`` of them become zero and stay zero while
    training goes on (fine-tuning). ``steps`` > 1 prunes gradually at the first epochs, on Zhu
    and Gupta's 2017 cubic schedule."""

    amount: float = Field(..., gt=0.0, lt=1.0, description="the share pruned, < 1")
    structure: Literal["weights", "channels"] = Field(
        "weights", description="weights: single weights become zero (the layers keep their "
        "size); channels: whole channels and neurons are removed (Torch-Pruning), so the model "
        "is narrower and faster",
    )  # fmt: skip
    scope: Literal["global", "layer"] = Field(
        "global", description="weights: the smallest of the whole model, or of each layer"
    )
    steps: int = Field(1, ge=1, description="weights: pruning events, one per epoch")

    @model_validator(mode="after")
    def _channels_at_once(self) -> PruneConfig:
        if self.structure == "channels" and self.steps > 1:
            raise ValueError("train.prune.steps > 1 is for structure: weights; channels are "
                             "removed once, before fine-tuning")  # fmt: skip
        return self


class QATConfig(Section):
    """Quantization-aware training: convolutions and linear layers compute with their weights
    and inputs rounded as ONNX Runtime's int8 will round them (weights per output channel to 7
    bits, signed: its ``reduce_range``; inputs per tensor to 8 bits, their range tracked while
    training), the rounding passed through unchanged by the gradient (straight-through). The
    run's ``int8`` export then quantizes weights that learned to live with it."""

    observe_steps: int = Field(
        100, ge=0, description="steps that only track the inputs' ranges before rounding them"
    )
    momentum: float = Field(
        0.01, gt=0.0, le=1.0, description="how fast the tracked ranges follow each batch"
    )


# train settings that DP-SGD cannot be combined with: (field, the value that conflicts, why)
NOT_WITH_PRIVACY = (
    ("compile", True, "Opacus' per-example gradient hooks do not run under torch.compile"),
    ("adversarial", "set", "the attack's input gradients would bypass per-example clipping"),
    ("accumulate", "> 1", "micro-batches of a Poisson-sampled batch break the accounting"),
    ("precision", "fp16", "Opacus' per-example gradients do not support a gradient scaler"),
    ("grad_clip", "set", "DP-SGD clips each example's gradient (train.privacy.max_grad_norm)"),
    ("method", "set", "unlabelled images would join the batch without per-example accounting"),
    ("distill", "set", "the teacher saw the training data without noise: its outputs leak it"),
    ("prune", "set", "DP-SGD's noise would move the pruned weights again"),
    ("qat", "set", "Opacus computes per-example gradients of unrounded layers"),
    ("mixup", "set", "a mixed example holds two examples' data: clipping one example's "
     "gradient no longer bounds what each one reveals"),
)  # fmt: skip


class TrainConfig(Section):
    epochs: int | None = Field(None, ge=1)
    max_steps: int | None = Field(None, ge=1)
    batch_size: int = Field(64, ge=1)
    steps_per_epoch: int = Field(
        250, ge=1, description="batches between validations, for streamed data (language "
        "models) and for a few labels (data.labels_per_class)",
    )  # fmt: skip
    eval_batches: int = Field(
        20, ge=1, description="streamed data: validation batches (of eval.batch_size windows)"
    )
    optimizer: Literal["sgd", "adam", "adamw"] = "adamw"
    lr: float = Field(1e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(0.0, ge=0.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="for sgd")
    nesterov: bool = False
    betas: tuple[float, float] = (0.9, 0.999)
    schedule: ScheduleConfig = ScheduleConfig()
    grad_clip: float | None = Field(None, gt=0.0, description="max global gradient norm")
    ema: float | None = Field(
        None, gt=0.0, lt=1.0, description="decay of an exponential moving average of the "
        "weights (e.g. 0.999): validation, the best checkpoint, evaluation and export use it"
    )  # fmt: skip
    accumulate: int = Field(1, ge=1, description="batches per optimizer step")
    device: str = Field(
        "auto",
        description="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps; under "
        "torchrun each process takes its LOCAL_RANK GPU",
    )
    precision: Literal["32", "bf16", "fp16"] = Field(
        "32", description="32, bf16 (autocast) or fp16 (autocast and a gradient scaler)"
    )
    tf32: bool = Field(False, description="CUDA: TensorFloat-32 matmuls and convolutions in fp32")
    compile: bool = Field(
        False, description="torch.compile the model (eager, with a warning, if it cannot)"
    )
    data_on_device: bool | Literal["auto"] = Field(
        "auto",
        description="keep the training split on the device (no copy per batch); auto: when it "
        "takes at most half of the device's free memory",
    )
    channels_last: bool = Field(
        True, description="NHWC memory layout for 4-D inputs (faster convs)"
    )
    adversarial: AdversarialConfig | None = Field(
        None, description="train on attacked inputs (adversarial training)"
    )
    privacy: PrivacyConfig | None = Field(
        None, description="differentially private training (DP-SGD)"
    )
    method: SemiSupervisedConfig | ContrastiveConfig | None = Field(
        None, discriminator="name", description="learning from the unlabelled split: "
        "fixmatch, pseudo_label (semi-supervised) or simclr (contrastive pre-training)",
    )  # fmt: skip
    distill: DistillConfig | None = Field(
        None, description="learn from a teacher run's outputs as well as the labels"
    )
    prune: PruneConfig | None = Field(
        None, description="zero the smallest weights and fine-tune with them kept at zero"
    )
    qat: QATConfig | None = Field(
        None, description="quantization-aware training, for an int8 export that keeps accuracy"
    )
    mixup: MixupConfig | None = Field(
        None, description="learn from mixed pairs of examples and their targets (mixup)"
    )
    early_stopping: EarlyStoppingConfig | None = None
    checkpoint: CheckpointConfig = CheckpointConfig()
    non_finite: NonFiniteConfig = NonFiniteConfig()
    log_every_steps: int = Field(50, ge=1)
    deterministic: bool = False
    num_threads: int | None = Field(None, ge=1, description="torch CPU threads")
    tensorboard: bool = True
    mlflow: bool = Field(False, description="also log to MLflow (needs mlflow installed)")

    @field_validator("device")
    @classmethod
    def _known_device(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", value):
            raise ValueError(
                "unknown device. Allowed: auto, cpu, cuda, cuda:N (N = 0, 1, ...), mps"
            )
        return value

    @field_validator("precision", mode="before")
    @classmethod
    def _precision_as_text(cls, value: Any) -> Any:
        return "32" if value == 32 else value  # an unquoted 32 in YAML is an int

    @model_validator(mode="after")
    def _epochs_or_steps(self) -> TrainConfig:
        if self.epochs is not None and self.max_steps is not None:
            raise ValueError("give train.epochs or train.max_steps, not both")
        if self.epochs is None and self.max_steps is None:
            object.__setattr__(self, "epochs", 10)
        return self

    @model_validator(mode="after")
    def _one_objective(self) -> TrainConfig:
        named = {"method": self.method, "distill": self.distill, "mixup": self.mixup}
        chosen = [field for field, value in named.items() if value is not None]
        if len(chosen) > 1:
            first, second = chosen[:2]
            raise ValueError(
                f"train.{first} cannot be combined with train.{second}: both set the training "
                "objective; use one"
            )
        return self

    @model_validator(mode="after")
    def _contrastive_keeps_the_best_encoder(self) -> TrainConfig:
        """SimCLR never trains the output layer: its validation loss says nothing, so the
        checkpoint kept as best is the one whose features sort best, unless told otherwise."""
        if isinstance(self.method, ContrastiveConfig) and (
            "monitor" not in self.checkpoint.model_fields_set
        ):
            best = self.checkpoint.model_copy(update={"monitor": "val/knn_accuracy", "mode": "max"})
            object.__setattr__(self, "checkpoint", best)
        return self

    @model_validator(mode="after")
    def _qat_in_float32(self) -> TrainConfig:
        if self.qat is not None and self.precision != "32":
            raise ValueError(
                f"train.qat cannot be combined with train.precision {self.precision}: it "
                "rounds float32 weights and inputs to int8's grid; use precision 32"
            )
        return self

    @model_validator(mode="after")
    def _privacy_combines(self) -> TrainConfig:
        if self.privacy is None:
            return self
        for field, value, why in NOT_WITH_PRIVACY:
            current = getattr(self, field)
            if value == "set":
                clash = current is not None
            elif value == "> 1":
                clash = current > 1
            else:
                clash = current == value
            if clash:
                raise ValueError(f"train.privacy cannot be combined with train.{field}: {why}")
        return self
