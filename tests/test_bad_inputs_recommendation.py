"""The bad-input catalogue, part 6: recommendation (ids, interactions) and behaviour cloning.

One row per case: `(id, run, error, fragment)`, as in `tests/test_bad_inputs.py`.
The same rows are in docs/errors.md ("Recommendation and behaviour cloning").
"""

import keras
import numpy as np
import pandas as pd
import pytest

import finetunekit as fk
from tests.catalogue import run_case, undocumented
from tests.conftest import tiny_tuner

USERS, ITEMS = ["a", "b", "c"], ["x", "y", "z"]
FRAME = pd.DataFrame({"user": ["a", "b", "c", "a"], "item": ["x", "y", "z", "y"],
                      "rating": [1.0, 2.0, 3.0, 4.0], "timestamp": [1, 2, 3, 4]})


def towers(**options):
    return fk.backbones.Embeddings(users=USERS, items=ITEMS, dim=4, **options)


def tuner(head=None):
    return fk.FineTuner(backbone=towers(), head=head or fk.RetrievalHead(k=2), unfreeze="all")


def fit(data, head=None):
    return tuner(head).fit(data, epochs=1, verbose=0)


def saved_dim_8(tmp):
    model = fk.backbones.Embeddings(users=USERS, items=ITEMS, dim=8)
    model.save_weights(str(tmp / "dim8.weights.h5"))
    return towers(pretrained=str(tmp / "dim8.weights.h5"))


def image_weights(tmp):
    tiny_tuner().save_weights(str(tmp / "cnn.weights.h5"))
    return towers(pretrained=str(tmp / "cnn.weights.h5"))


def bare_bert():
    from tests.test_text import tiny_bert

    return tiny_bert()[0]


def policy():
    inputs = keras.Input((4,))
    return fk.FineTuner(backbone=keras.Model(inputs, keras.layers.Dense(4)(inputs)),
                        head=fk.ClassificationHead(2))


def continuous_env(tmp):
    gymnasium = pytest.importorskip("gymnasium")
    return fk.rl.evaluate_policy(lambda s: np.zeros(len(s)), gymnasium.make("Pendulum-v1"), 2)


def cartpole():
    gymnasium = pytest.importorskip("gymnasium")
    return gymnasium.make("CartPole-v1")


# fmt: off
CASES = [
    ("unknown_user_in_recommend", lambda t: tuner().recommend(["nobody"]), ValueError, r"1 user id\(s\) are not known to the model: 'nobody'\. Add them to fk\.backbones\.Embeddings\(users=\.\.\.\)"),
    ("unknown_item_in_fit", lambda t: fit(FRAME.assign(item=["x", "y", "z", "w"])), ValueError, r"1 item id\(s\) are not known to the model: 'w'"),
    ("interactions_without_item_column", lambda t: fit(FRAME.drop(columns="item"), fk.RankingHead()), ValueError, r"The interactions have no item column\. Columns: \['user', 'rating', 'timestamp'\]"),
    ("empty_interactions", lambda t: fit(FRAME.iloc[:0]), ValueError, r"No interactions: the table is empty"),
    ("k_larger_than_items", lambda t: tuner().recommend(["a"], k=5), ValueError, r"k=5 is larger than the 3 items the model knows\. Pass k <= 3"),
    ("ranking_without_ratings", lambda t: fit(FRAME.drop(columns="rating"), fk.RankingHead()), ValueError, r"No targets: RankingHead needs a rating \(or label\) column in the interactions, or y=\.\.\."),
    ("click_targets_not_0_1", lambda t: fit(FRAME, fk.RankingHead(task="click")), ValueError, r'RankingHead\(task="click"\) needs 0/1 targets; use task="rating"'),
    ("missing_ids", lambda t: fit(FRAME.assign(user=["a", None, "c", "a"])), ValueError, r"Ids must not be missing"),
    ("pretrained_dim_differs", saved_dim_8, ValueError, r"The pretrained users table has 8 dimensions but dim=4\. Pass dim=8"),
    ("item_vectors_narrower_than_dim", lambda t: towers(item_vectors={"x": [1.0, 2.0]}), ValueError, r"`item_vectors` must be finite and at least dim=4 wide; they are 2 wide\. Pass dim=2 or less"),
    ("pretrained_file_without_id_tables", image_weights, ValueError, r"holds no user/item embedding tables; pretrained= takes the \.weights\.h5 of a model with an fk\.backbones\.Embeddings backbone"),
    ("unfreeze_more_towers_than_exist", lambda t: fk.FineTuner(backbone=towers(), head=fk.RetrievalHead(), unfreeze=3), ValueError, r"`unfreeze=3` but the backbone has 2 blocks \(items, users\)"),
    ("retrieval_head_on_an_image_backbone", lambda t: tiny_tuner(head=fk.RetrievalHead()), ValueError, r"This head needs user and item towers \(candidates, query\), which a image backbone \(keras_model\) does not provide\. Use fk\.backbones\.Embeddings"),
    ("feature_table_of_the_wrong_length", lambda t: towers(item_features={"genre": ["comedy", "drama"]}), ValueError, r"`item_features\['genre'\]` has 2 values but there are 3 ids\. Pass one value per id, in the order of users=/items=, or a dict \{id: value\}"),
    ("side_features_not_a_dict", lambda t: towers(item_features=["comedy", "drama", "war"]), ValueError, r"`item_features` must be a dict \{feature name: values\} or a DataFrame indexed by id\. Received: list"),
    ("item_text_without_an_encoder", lambda t: towers(item_text=["a", "b", "c"]), ValueError, r"`item_text` needs `text_encoder=`"),
    ("text_encoder_without_item_text", lambda t: towers(text_encoder=lambda texts: np.ones((len(texts), 4))), ValueError, r"`text_encoder` embeds `item_text`; pass item_text=\.\.\. too"),
    ("text_encoder_gives_a_wrong_shape", lambda t: towers(item_text=["a", "b", "c"], text_encoder=lambda texts: np.ones(4)), ValueError, r"`text_encoder` must return one finite vector per text: 3 texts gave an array of shape \(4,\)"),
    ("exclude_seen_on_a_ranking_head", lambda t: tuner(fk.RankingHead()).evaluate(FRAME, report=True, exclude_seen=True), ValueError, r"exclude_seen apply to a RetrievalHead's evaluate\(report=True\), evaluate_ranking and recommend, not to RankingHead here"),
    ("tflite_export_of_raw_ids", lambda t: tuner().export(str(t / "lite"), format="tflite"), ValueError, r'format="tflite" takes numeric inputs; a model on raw ids \(fk\.backbones\.Embeddings\) exports with format="saved_model"'),
    ("text_encoder_backbone_without_preprocessor", lambda t: towers(item_text=["a", "b", "c"], text_encoder=bare_bert()), ValueError, r"a keras-hub Backbone needs its preprocessor: pass the pair"),
    ("temporal_split_without_timestamps", lambda t: fk.data.temporal_split(FRAME.drop(columns="timestamp")), ValueError, r"temporal_split needs a timestamp column"),
    ("ids_mixing_numbers_and_strings", lambda t: fk.data.read_interactions({"user": [1, "1", 2], "item": ["x", "y", "z"]}), ValueError, r"Ids mix numbers and strings that name the same id \(1 such, e\.g\. 1 and '1'\); they would be merged into one"),
    ("boolean_ids", lambda t: fk.data.read_interactions({"user": [True, False, True], "item": ["x", "y", "z"]}), ValueError, r"Ids must be strings or whole numbers; found booleans"),
    ("timestamps_as_day_month_strings", lambda t: fk.data.temporal_split(FRAME.assign(timestamp=["02/01/2024", "10/01/2023", "03/01/2024", "04/01/2024"])), ValueError, r"Timestamps are strings that are not ISO 8601 dates \(e\.g\. '02/01/2024'\), which would sort as text"),
    ("timestamps_missing", lambda t: fk.data.temporal_split(FRAME.assign(timestamp=[1.0, None, 3.0, 4.0])), ValueError, r"1 of 4 interactions have no timestamp; temporal_split cannot place them in time"),
    ("timestamps_of_mixed_types", lambda t: fk.data.temporal_split(FRAME.assign(timestamp=[1, "2024-01-01", 3, 4])), ValueError, r"Timestamps mix types \(int, str\)"),
    ("temporal_split_with_an_empty_part", lambda t: fk.data.temporal_split(FRAME, fractions=(0.01,)), ValueError, r"temporal_split with fractions=\(0\.01,\) on 4 interactions gives an empty part \(sizes \[0, 4\]\)"),
    ("env_with_continuous_actions", continuous_env, ValueError, r"Behaviour cloning with a ClassificationHead needs a discrete action space"),
    ("states_of_the_wrong_width", lambda t: policy().fit(np.zeros((4, 3)), [0, 1, 0, 1], verbose=0), ValueError, r"x must be vectors of shape \(n, 4\) for this backbone\. Received shape \(4, 3\)"),
    ("policy_with_a_regression_head", lambda t: fk.rl.evaluate_policy(fk.FineTuner(backbone=policy().backbone, head=fk.RegressionHead()), cartpole(), 1), ValueError, r"A policy FineTuner needs a single-label fk\.ClassificationHead \(one class per action\); this one has RegressionHead"),
    ("policy_with_more_actions_than_the_env", lambda t: fk.rl.evaluate_policy(fk.FineTuner(backbone=policy().backbone, head=fk.ClassificationHead(3)), cartpole(), 1), ValueError, r"The policy chooses among 3 actions but the env has 2\. Use ClassificationHead\(num_classes=env\.action_space\.n\)"),
    ("expert_returning_probabilities", lambda t: fk.rl.collect_demonstrations(lambda s: np.full(len(s), 0.7), cartpole(), 1), ValueError, r"The policy returned 0\.7, not an action id: a discrete env takes whole numbers 0\.\.n-1"),
    ("expert_returning_an_action_out_of_range", lambda t: fk.rl.collect_demonstrations(lambda s: np.full(len(s), 5), cartpole(), 1), ValueError, r"The policy returned action 5, outside the env's 2 actions \(0\.\.1\)"),
    ("expert_returning_one_value_for_all_states", lambda t: fk.rl.collect_demonstrations(lambda s: 1 if len(s) == 1 else [1], cartpole(), 2), ValueError, r"The policy returned an array of shape \(1,\) for 2 states; it must return one action per state"),
    ("policy_model_of_the_wrong_width", lambda t: fk.rl.evaluate_policy(keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)]), cartpole(), 1), ValueError, r"The policy model gives 3 outputs per state but the env has 2 actions; its last layer needs 2 units"),
    ("policy_that_is_not_callable", lambda t: fk.rl.evaluate_policy("expert", cartpole(), 1), ValueError, r"policy must be a FineTuner, a keras\.Model or a callable states -> actions"),
]
# fmt: on


@pytest.mark.parametrize("case_id,run,error,fragment", CASES, ids=[c[0] for c in CASES])
def test_bad_input(tmp_path, case_id, run, error, fragment):
    run_case(run, error, fragment, tmp_path)


def test_iso_date_strings_split_in_time_order():
    frame = FRAME.assign(timestamp=["2024-01-02", "2023-01-10", "2024-01-03", "2024-01-04"])
    first, last = fk.data.temporal_split(frame, fractions=(0.25, 0.75))
    assert first["user"].tolist() == ["b"] and last["user"].tolist() == ["a", "c", "a"]
    mixed = fk.data.read_interactions({"user": [1, "2"], "item": ["x", "y"]})
    assert mixed["user"].tolist() == ["1", "2"]  # numbers and strings that differ stay apart


def test_rows_are_documented():
    assert undocumented([c[0] for c in CASES], "Recommendation and behaviour cloning") == []
