"The API refuses bad input with a ValueError/TypeError that names what is allowed."
import numpy as np
import pytest

from compress_papers.core import get_device
from compress_papers.data import get_data, stratified_split
from compress_papers.models import get_model
from compress_papers.train import TrainConfig, baseline_config, pretrained
from compress_papers.measure import packed_bytes
from compress_papers.reproduce import select_papers


@pytest.mark.parametrize("call, exc, message", [
    (lambda: get_data("svhn"), ValueError, "data must be one of 'mnist5k', 'digits', 'cifar10', 'imagenet'"),
    (lambda: get_data("imagenet"), ValueError, "imagenet needs a data folder"),
    (lambda: get_data("imagenet", root="/nonexistent"), FileNotFoundError, "ImageNet not found"),
    (lambda: get_data("cifar10"), ValueError, "needs a data folder"),
    (lambda: get_data("cifar10", root="/nonexistent"), FileNotFoundError, "expected data_batch_1"),
    (lambda: stratified_split(np.arange(5), 0.1, 0.1), ValueError, "split is empty"),   # one example per class: no training set
    (lambda: get_data("mnist5k", val=0.5, test=0.5), ValueError, "training set is not empty"),
    (lambda: get_data("mnist5k", val=1.5), ValueError, "val must be in [0, 1)"),
    (lambda: get_model("resnet19"), ValueError, "model must be one of 'lenet5', 'lenet-3x3', 'vgg-small'"),
    (lambda: get_model(3), TypeError, "model name must be a string"),
    (lambda: TrainConfig(model="resnet19"), ValueError, "model must be one of"),
    (lambda: baseline_config("lenet5", size="medium"), ValueError, "size must be one of 'smoke', 'full'"),
    (lambda: pretrained("lenet5", data="cifar10"), ValueError, "needs a data folder"),
    (lambda: get_device("tpu"), ValueError, "device must be one of"),
    (lambda: packed_bytes(10, 0), ValueError, "bits must be an integer in 1..64"),
    (lambda: packed_bytes(10, 2.5), TypeError, "bits must be an integer"),
    (lambda: select_papers(["nope"]), ValueError, "paper must be one of"),
])
def test_bad_input(call, exc, message):
    with pytest.raises(exc) as e: call()
    assert message in str(e.value)


def test_unavailable_cuda_is_refused():
    import torch
    if torch.cuda.is_available(): pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="not available"): get_device("cuda")
