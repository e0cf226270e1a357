"""The shared set-up every method ran under, in the words the report prints: the backbone's
condition path, the space it diffuses in, and the suite's classifier-free guidance."""
from __future__ import annotations

from bench.methods import REGISTRY, method_name
from bench.models.init import PRETRAIN
from bench.models.unet import CONDITION_PATHS
from bench.report.collect import SuiteData

PRE_OPTION_CONDITION_PATH = "attention+time"  # the only path before [model] condition_path existed


def setup_text(data: SuiteData) -> str:
    """One paragraph from plan.json's resolved config and the planned method variants."""
    config = data.plan.get("config", {})
    model, train, sample = (config.get(key, {}) for key in ("model", "train", "sample"))
    path = model.get("condition_path", PRE_OPTION_CONDITION_PATH)
    text = (f"Shared backbone: {_backbone(config)}, the condition entering through "
            f"{CONDITION_PATHS.get(path, 'an unknown path')} (model.condition_path = \"{path}\"), "
            + (f"in latent space (VAE {model['vae']}; samples decoded before scoring). " if model.get("vae")
               else "in pixel space. "))
    if "guidance" not in sample:
        return text + ("Classifier-free guidance: not recorded (a store from before it was a suite "
                       "setting, when only ssl was guided, by its own parameters).")
    names = sorted({method_name(v) for variants in data.methods.values() for v in variants})
    exempt = [n for n in names if n in REGISTRY and not REGISTRY[n].classifier_free_guidance]
    unknown = [n for n in names if n not in REGISTRY]
    text += (f"Classifier-free guidance: p_uncond = {train.get('p_uncond')}, g = {sample['guidance']} "
             "for every class-conditional method")
    if exempt:
        text += f" (not {', '.join(exempt)}: no class condition to drop or contrast)"
    if unknown:
        text += f"; not known here whether {', '.join(unknown)} used it (method not registered)"
    return text + "."


def _backbone(config: dict) -> str:
    """The U-Net every method started from: trained from scratch, or [model] init's source."""
    model, pretrain = config.get("model", {}), config.get("pretrain", {})
    init = model.get("init", "")
    if not init:
        return f"the {model.get('size', '?')} U-Net"  # trained from scratch
    if init == PRETRAIN:
        return (f"the {model.get('size', '?')} U-Net pretrained by `bench pretrain` on {pretrain.get('data', '?')} "
                f"({pretrain.get('steps', '?')} steps, unconditional), then fine-tuned (model.init = \"pretrain\")")
    return f"a pretrained U-Net (model.init = \"{init}\"), fine-tuned"
