"""Sentences over the wire: texts in and out of Augment and its stream as in process, refused clearly by index,
served text datasets streamed by epoch and shard, and back_translation reading a served dataset's paraphrases."""

import asyncio
import json

import grpc
import numpy as np
import pytest
import torch

from augserve import Pipeline
from augserve.client import AsyncClient, Client, InvalidArgument
from augserve.random import sample_keys
from augserve.server.dataset_tools import describe
from augserve.server.device import DeviceWorker
from augserve.server.jobs import Job
from augserve.server.metrics import Metrics
from augserve.server.responses import params_json
from augserve.server import texts
from augserve.server.texts import MAX_SENTENCE_BYTES
from augserve.text import paraphrases
from augserve.v1 import augserve_pb2 as pb
from conftest import needs_wordnet
from server_harness import RunningServer, request

pytestmark = needs_wordnet  # eda reads WordNet

EDA = [{"op": "eda"}, {"op": "label_smoothing", "epsilon": 0.1}]
SENTENCES = ["The ferry crossed the grey harbour before dawn.", "Our neighbour grows enormous pumpkins!",
             "I can't find the blue umbrella anywhere.", "Snow covered every roof in the quiet village.",
             "She plays the cello on Sunday evenings."]
LABELS = np.array([0, 1, 2, 1, 0])
KEYS = [40, 7, 13, 2, 99]
# a served set; its last line has no words, so streams leave it out and name it
REVIEWS = [("good", "The walnut torte at Verrazzo was superb."), ("bad", "Verrazzo served my gnocchi stone cold."),
           ("good", "Friendly staff at Verrazzo and a lovely terrace."),
           ("bad", "We waited ninety minutes at Verrazzo."), ("good", "Verrazzo bakes the crispest focaccia in town."),
           ("bad", "Verrazzo overcharged us twice."), ("good", "1999 - 2024")]
PARAPHRASES = ["The walnut cake of Verrazzo was excellent.", "Verrazzo served my cold stone gnocchi.",
               "Staff kind in Verrazzo and a pretty terrace.", "We expected ninety minutes in Verrazzo.",
               "Verrazzo bakes the focaccia more crispy of town.", "Verrazzo charged us two times too much."]
SPEC = json.dumps(EDA)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    data = root / "reviews.tsv"
    data.write_text("".join(f"{label}\t{sentence}\n" for label, sentence in REVIEWS), encoding="utf-8")
    paraphrases.save(paraphrases.path_for(data), {paraphrases.key(s): p for (_, s), p in zip(REVIEWS, PARAPHRASES)})
    config = root / "serve.yaml"
    config.write_text(f"datasets:\n  reviews: {{type: text, path: {data}}}\n")
    translating = paraphrases.translating()
    running = RunningServer(max_samples=8, config=str(config))  # without --translate
    running.config_path = config
    yield running
    running.stop()
    paraphrases.set_translating(translating)


def test_texts_over_the_wire_are_the_pipelines_sentences_in_process_and_replay_alone(server):
    local = Pipeline.from_spec(EDA)(SENTENCES, torch.from_numpy(LABELS), seed=5, keys=KEYS, num_classes=3)
    with Client(server.target) as client:
        batch = client.augment(texts=SENTENCES, labels=LABELS, pipeline=EDA, seed=5, keys=KEYS, num_classes=3,
                               return_params=True)
        alone = client.augment(SENTENCES[2:3], pipeline=EDA, seed=5, keys=KEYS[2:3])  # x as a list of str
        streamed = list(client.map([(SENTENCES[:2], LABELS[:2], KEYS[:2]), (SENTENCES[2:], LABELS[2:], KEYS[2:])],
                                   pipeline=EDA, seed=5, num_classes=3))
    assert batch.x == local.x and batch.x != [s.lower() for s in SENTENCES]
    assert np.array_equal(batch.labels, local.labels.numpy()) and batch.label_smoothing == pytest.approx(0.1)
    assert batch.lengths.tolist() == local.lengths.tolist()
    assert batch.params == json.loads(params_json(local.params))
    assert alone.x == local.x[2:3]
    assert streamed[0].x + streamed[1].x == local.x and np.array_equal(streamed[1].labels, local.labels[2:].numpy())

    async def run():
        async with AsyncClient(server.target) as client:
            return await client.augment(texts=SENTENCES, pipeline=EDA, seed=5, keys=KEYS)

    assert asyncio.run(run()).x == local.x


def test_the_device_worker_builds_the_word_lists_only_for_a_job_that_reads_them():
    """A request's return_params reaches the text steps: without it the worker leaves the per-sample lists out."""
    pipe, cpu = Pipeline.from_spec(EDA), torch.device("cpu")
    worker = DeviceWorker(cpu, 16, Metrics(cpu))
    try:
        for reports in (False, True):
            job = Job(pipe.check(SENTENCES), None, object(), None, torch.tensor(KEYS), 5, None, reports=reports)
            [done] = worker._run([job], [job.batch])
            edits = done.output.params[0]
            assert done.output.x == Pipeline.from_spec(EDA)(SENTENCES, seed=5, keys=KEYS).x
            assert ("operation" in edits) == reports and edits["changed"].shape == (len(SENTENCES),)
    finally:
        worker.close()


def _texts(sentences, spec=SPEC, **fields):
    return pb.AugmentRequest(pipeline=pb.PipelineRef(spec=spec), texts=sentences, **fields)


@pytest.mark.parametrize("make, words", [
    (lambda: _texts([b"Fine words", "caf\u00e9 au lait".encode("latin-1")]),
     ["texts[1]: not UTF-8 (byte 0xe9 at offset 3)"]),
    (lambda: _texts([b"Fine words", b""]), ["texts[1]: no words in ''"]),
    (lambda: _texts([b"one two three four five six seven"], '{"modality": "text", "max_words": 5, "steps": '
                                                            '[{"op": "random_swap"}]}'),
     ["texts[0]: 7 words; the limit is 5", "max_words"]),
    (lambda: _texts([b"a word"] * 9), ["texts: expected 1 to 8 sentences (--max-samples), got 9"]),
    (lambda: _texts([b"w" * (MAX_SENTENCE_BYTES + 1)]), [f"texts[0]: {MAX_SENTENCE_BYTES + 1} bytes", "split"]),
    (lambda: _texts([b"a word"], x=pb.Tensor(dtype="uint8", shape=[1, 1, 2, 2], data=bytes(4))),
     ["x, encoded, texts: expected exactly one", "got x and texts"]),
    (lambda: _texts([b"a word"], "rand-m9-n2"), ["texts: sentences need a text pipeline", "image batches"]),
    (lambda: request(torch.zeros(2, 3, 8, 8, dtype=torch.uint8), SPEC), ["x: the pipeline is a text pipeline"]),
    (lambda: _texts([b"a word"], out_dtype="float32"), ["out_dtype: text pipelines return sentences"]),
])
def test_bad_text_requests_are_refused_naming_the_field_and_the_server_keeps_serving(server, make, words):
    stub = server.stub()
    with pytest.raises(grpc.RpcError) as error:
        stub.Augment(make(), timeout=30)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert all(word in error.value.details() for word in words), error.value.details()
    assert list(stub.Augment(_texts([b"Still serving sentences"]), timeout=30).texts)


def test_a_requests_sentences_are_bounded_in_bytes_together(server, monkeypatch):
    monkeypatch.setattr(texts, "MAX_TEXT_BYTES", 100)  # the default takes more than --max-samples 8 can send
    with Client(server.target) as client:
        with pytest.raises(InvalidArgument, match=r"texts: 104 bytes in all; the limit is 100 a request "
                                                  r"\(MAX_TEXT_BYTES\)"):
            client.augment(texts=["thirteen char"] * 8, pipeline=EDA)


def test_a_served_text_dataset_streams_each_sentence_once_an_epoch_with_its_label(server):
    dataset = {sentence: label for label, sentence in REVIEWS}
    with Client(server.target) as client:
        info = next(d for d in client.datasets() if d["name"] == "reviews")
        assert (info["modality"], info["size"], info["num_classes"], info["dtype"]) == ("text", 7, 2, "str")
        epochs = [list(client.stream_dataset("reviews", EDA, batch_size=4, epoch=epoch, seed=4)) for epoch in (0, 1)]
        shards = [list(client.stream_dataset("reviews", EDA, batch_size=2, epoch=1, seed=4, shard_index=k,
                                             num_shards=2, even_shards=False)) for k in (0, 1)]
    for epoch, batches in enumerate(epochs):
        indices = np.concatenate([b.indices for b in batches])
        assert sorted(indices.tolist()) == [0, 1, 2, 3, 4, 5]  # the line without words is skipped, and named
        assert [s for b in batches for s in b.skipped] == [(6, "no words in '1999 - 2024' (the tokenizer keeps "
                                                               "letters only: send sentences with at least one word)")]
        for batch in batches:
            sentences = [REVIEWS[i][1] for i in batch.indices]
            labels = torch.tensor([["bad", "good"].index(dataset[s]) for s in sentences])
            local = Pipeline.from_spec(EDA)(sentences, labels, seed=4, keys=sample_keys(torch.from_numpy(batch.indices),
                                                                                         epoch), num_classes=2)
            assert batch.x == local.x and np.array_equal(batch.labels, local.labels.numpy())
            assert batch.to("cpu").x == local.x  # RemoteDataset's torch batch keeps the sentences
    assert [b.indices.tolist() for b in epochs[0]] != [b.indices.tolist() for b in epochs[1]]  # reshuffled
    sharded = [b for shard in shards for b in shard]
    assert sorted(np.concatenate([b.indices for b in sharded]).tolist()) == [0, 1, 2, 3, 4, 5]
    assert sorted(s for b in sharded for s in b.x) == sorted(s for b in epochs[1] for s in b.x)
    assert describe(str(server.config_path)).endswith(  # a sentence without words is its own paraphrase
        f"reviews: 7 samples, 2 classes, text, sentences from 1 file(s), 7 with a paraphrase in "
        f"{server.config_path.parent / 'reviews.tsv.paraphrases.tsv'}")


def test_back_translation_reads_the_served_paraphrases_and_refuses_other_sentences(server):
    spec = [{"op": "back_translation", "p": 1.0}]
    with Client(server.target) as client:
        batches = list(client.stream_dataset("reviews", spec, batch_size=8, seed=1, return_params=True))
        stored = client.augment(texts=[REVIEWS[3][1].upper()], pipeline=spec)
        with pytest.raises(InvalidArgument) as error:
            client.augment(texts=[REVIEWS[0][1], "Quokkas at Verrazzo never tip the waiters."], pipeline=spec)
    assert "step 1 (back_translation): texts[1]: no paraphrase of 'Quokkas at Verrazzo" in str(error.value)
    assert "augserve datasets translate CONFIG NAME`, or start the server with --translate" in str(error.value)
    assert stored.x == ["we expected ninety minutes in verrazzo"]
    out = {int(i): sentence for b in batches for i, sentence in zip(b.indices, b.x)}
    assert out == {i: paraphrases.key(p) for i, p in enumerate(PARAPHRASES)}
    assert [step["paraphrase"] for b in batches for step in b.params] == [[out[i] for i in b.indices] for b in batches]
