"""Knowledge distillation: a student with fewer layers learns from a fine-tuned teacher (a `train` output).

The loss on every position that has a label (so not the article model's masked headline part) is

    alpha * KL(teacher || student at temperature T) * T^2      Hinton et al.: T^2 keeps the gradient scale
  + beta * cross-entropy on the labels                           as T changes
  + cosine_weight * cosine loss between the last hidden states   (DistilBERT's third term; off by default)

The student starts as the teacher with an evenly spaced subset of its blocks (how DistilGPT2 was initialised
from GPT-2), or from any local checkpoint / hub name. The output directory is laid out exactly like `train`'s,
so `publish` takes it unchanged; validation loss is the student's own cross-entropy, so its perplexity
compares with a trained model's.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, replace
from pathlib import Path

from transformers import Trainer

from newsgen.artifacts import prompt_format_of
from newsgen.prompt import PROMPT_FORMAT
from training.model import build_model, tuned_generation_config
from training.tokenizer import base_tokenizer
from training.train import (
    TrainError,
    TrainOptions,
    check_base,
    check_options,
    data_collator,
    default_learning_rate,
    fit,
    load_base,
    load_datasets,
    training_arguments,
)

FROM_TEACHER = "teacher"


@dataclass(kw_only=True)
class DistillOptions(TrainOptions):
    """TrainOptions (task None: the teacher's; base is set to where the student's weights come from) plus the
    distillation's own."""

    teacher: Path
    student_layers: int | None = None  # default: half the teacher's, at least 1
    student_init: str = FROM_TEACHER  # or a local checkpoint / hub name
    alpha: float = 0.5
    beta: float = 0.5
    temperature: float = 2.0
    cosine_weight: float = 0.0


def teacher_report(teacher: Path) -> dict:
    if not (teacher / "config.json").is_file():
        raise TrainError(f"--teacher {teacher} is not a model directory written by `train` (no config.json)")
    path = teacher / "training_report.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def evenly_spaced(total: int, keep: int) -> list[int]:
    """Block indices to keep: first and last included, as in DistilGPT2's [0, 2, 4, 7, 9, 11] of 12."""
    if keep == 1:
        return [0]
    return [round(i * (total - 1) / (keep - 1)) for i in range(keep)]


def student_from_teacher(teacher, layers: int):
    """A copy of the teacher with only `layers` of its transformer blocks (embeddings and ln_f kept)."""
    from transformers import GPT2LMHeadModel

    config = copy.deepcopy(teacher.config)
    config.n_layer = layers
    student = GPT2LMHeadModel(config)
    blocks = {old: new for new, old in enumerate(evenly_spaced(teacher.config.n_layer, layers))}
    state = {}
    for key, value in teacher.state_dict().items():
        if key.startswith("transformer.h."):
            index, rest = key.removeprefix("transformer.h.").split(".", 1)
            if int(index) not in blocks:
                continue
            key = f"transformer.h.{blocks[int(index)]}.{rest}"
        state[key] = value.clone()
    student.load_state_dict(state)
    return student


def build_student(options: DistillOptions, teacher, tokenizer):
    teacher_layers = teacher.config.n_layer
    if options.student_init == FROM_TEACHER:
        layers = options.student_layers or max(1, teacher_layers // 2)
        if not 1 <= layers <= teacher_layers:
            raise TrainError(f"--student-layers must be 1 to {teacher_layers} (the teacher's), not {layers}")
        return student_from_teacher(teacher, layers)
    check_base(options.student_init)
    student = load_base(options.student_init, build_model, tokenizer, seed=options.seed)
    if options.student_layers and options.student_layers != student.config.n_layer:
        raise TrainError(
            f"--student-layers {options.student_layers}, but --student-init {options.student_init} has "
            f"{student.config.n_layer}; leave --student-layers out with a checkpoint"
        )
    if options.cosine_weight and student.config.n_embd != teacher.config.n_embd:
        raise TrainError(
            f"--cosine-weight needs the student's hidden size ({student.config.n_embd}) to equal the teacher's "
            f"({teacher.config.n_embd})"
        )
    return student


def distill(options: DistillOptions) -> dict:
    teacher_dir = Path(options.teacher)
    report = teacher_report(teacher_dir)
    options = replace(options, task=options.task or report.get("task"))
    if not options.task:
        raise TrainError(f"--teacher {teacher_dir} has no training_report.json naming its task; pass --task")
    if report.get("task", options.task) != options.task:
        raise TrainError(
            f"--teacher {teacher_dir} is a {report['task']} model; it cannot teach the {options.task} task"
        )
    for name in ("alpha", "beta", "cosine_weight"):
        if getattr(options, name) < 0:
            raise TrainError(f"--{name.replace('_', '-')} must be >= 0")
    if options.temperature <= 0:
        raise TrainError("--temperature must be > 0")
    check_options(options)
    if (teacher_format := prompt_format_of(teacher_dir)) != PROMPT_FORMAT:
        raise TrainError(
            f"--teacher {teacher_dir} was trained in prompt format {teacher_format}, and the student learns from "
            f"text in format {PROMPT_FORMAT} (newsgen.prompt): train the teacher again with this version"
        )

    tokenizer = base_tokenizer(str(teacher_dir))  # the teacher's ids are the ones its logits speak
    train_set, eval_set = load_datasets(options, tokenizer)
    teacher = build_model(str(teacher_dir), tokenizer)
    student = build_student(options, teacher, tokenizer)
    student.generation_config = tuned_generation_config(options.task, tokenizer)

    # The teacher's learning rate by default (1e-3 for a tiny model, 5e-5 for a pretrained GPT-2), written into
    # the options so that the report says what ran and a student of this student inherits it.
    teacher_options = report.get("options", {})
    learning_rate = (
        options.learning_rate
        or teacher_options.get("learning_rate")
        or default_learning_rate(teacher_options.get("base", report.get("base_model", "")))
    )
    init = str(teacher_dir) if options.student_init == FROM_TEACHER else options.student_init
    options = replace(options, learning_rate=learning_rate, base=init)
    trainer = DistillationTrainer(
        teacher=teacher,
        alpha=options.alpha,
        beta=options.beta,
        temperature=options.temperature,
        cosine_weight=options.cosine_weight,
        model=student,
        args=training_arguments(options, options.learning_rate),
        train_dataset=train_set,
        eval_dataset=eval_set,
        data_collator=data_collator(tokenizer),
        processing_class=tokenizer,
    )
    summary = {
        "teacher": str(teacher_dir),
        "student_layers": student.config.n_layer,
        "init": options.student_init,
        "alpha": options.alpha,
        "beta": options.beta,
        "temperature": options.temperature,
        "cosine_weight": options.cosine_weight,
    }
    return fit(trainer, options, base_model=f"distilled:{teacher_dir.resolve().name}", extra={"distillation": summary})


class DistillationTrainer(Trainer):
    # compute_loss returns a per-batch mean: the Trainer divides it by the gradient accumulation steps.
    loss_is_scaled_for_ga = False

    def __init__(self, *, teacher, alpha: float, beta: float, temperature: float, cosine_weight: float, **kwargs):
        super().__init__(**kwargs)
        self.teacher = teacher.to(self.args.device).eval().requires_grad_(False)
        self.alpha, self.beta, self.temperature, self.cosine_weight = alpha, beta, temperature, cosine_weight

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        import torch
        import torch.nn.functional as F

        if not model.training:
            # Validation is the student's own cross-entropy, as in `train`: comparable perplexity, and the
            # best checkpoint is the best language model rather than the best imitator.
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        labels = inputs["labels"]
        features = {k: v for k, v in inputs.items() if k != "labels"}
        hidden = self.cosine_weight > 0
        outputs = model(**features, output_hidden_states=hidden)
        with torch.no_grad():
            teacher_outputs = self.teacher(**features, output_hidden_states=hidden)

        # Logits at position i predict token i + 1; only positions with a label count.
        targets = labels[:, 1:]
        keep = targets != -100
        student_logits = outputs.logits[:, :-1][keep].float()
        teacher_logits = teacher_outputs.logits[:, :-1][keep].float()
        t = self.temperature
        kl = F.kl_div(
            F.log_softmax(student_logits / t, dim=-1),
            F.log_softmax(teacher_logits / t, dim=-1),
            log_target=True,
            reduction="batchmean",  # rows are positions: the mean KL per position
        )
        loss = self.alpha * kl * t * t + self.beta * F.cross_entropy(student_logits, targets[keep])
        if hidden:
            student_hidden = outputs.hidden_states[-1][:, :-1][keep].float()
            teacher_hidden = teacher_outputs.hidden_states[-1][:, :-1][keep].float()
            ones = torch.ones(len(student_hidden), device=student_hidden.device)
            loss = loss + self.cosine_weight * F.cosine_embedding_loss(student_hidden, teacher_hidden, ones)
        return (loss, outputs) if return_outputs else loss
