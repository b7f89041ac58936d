"""A world's own prompt templates: `train` captions class names while unlearning, `test` in evaluation."""
import pytest

from ktmu.concepts import Hierarchy, HierarchyError
from ktmu.data import ArrayDataset
from ktmu.evaluation.zero_shot import ZeroShotEvaluator
from ktmu.prompts import TEMPLATES, eval_templates, train_templates
from ktmu.engine.request import UnlearningRequest
from ktmu.engine.trainer import ForgetSet, compute_reference

from conftest import TOY_WORLD


def _world(templates):
    return Hierarchy.from_dict({**TOY_WORLD, "templates": templates})


def test_world_templates_are_parsed_and_default_to_the_generic_set(toy_world):
    w = _world({"train": ["a bad photo of a {}."], "test": ["a photo of a {}.", "a drawing of a {}."]})
    assert train_templates(w) == ("a bad photo of a {}.",) and eval_templates(w) == ("a photo of a {}.", "a drawing of a {}.")
    assert train_templates(toy_world) == TEMPLATES == eval_templates(toy_world)


@pytest.mark.parametrize("bad", [{"train": ["no placeholder"]}, {"val": ["a {}."]}, ["a {}."], {"test": ["{} and {}"]}])
def test_bad_templates_are_refused(bad):
    with pytest.raises(HierarchyError, match="templates"):
        _world(bad)


def test_training_and_evaluation_use_the_worlds_templates(tiny_backbone, toy_train):
    w = _world({"train": ["a bad photo of a {}."], "test": ["a photo of a {}.", "a drawing of a {}."]})
    train = ArrayDataset(w, "train", toy_train.images, toy_train.fine_labels)
    assert ZeroShotEvaluator(train, tiny_backbone.preprocess).templates == eval_templates(w)
    forget = ForgetSet.from_request(UnlearningRequest.parse(w, ["shirt"]), train, tiny_backbone.preprocess)
    ref = compute_reference(tiny_backbone, forget, w)
    assert ref.fine_text.shape[0] == 1  # one train template: the original's text features under it only
