"""The released evaluation arithmetic, transcribed in numpy, on a small dataset of its own.

Writes tests/data/released-eval/ (committed; test_eval_protocols.c checks `vlm4rec eval` against it):

  items.tsv users.tsv train.tsv valid.tsv test.tsv   a vlm4rec dataset directory (docs/datasets.md),
                                                     with repeated test lines
  features/bert.npy features/vision.npy              random float32 vectors, rows of very different
                                                     norms, one zero vision row
  sample-users.txt                                   the user sample of the "released" case
  expected.tsv                                       case, model, metric, value

Cases:
  released     the released scripts/evaluate_all_final.py, evaluate_recommender: history = train +
               valid (all of it, restricted to the catalog), profile = the plain mean of the vectors,
               sklearn cosine (zero rows score 0), no mask, truth = the test lines with repeats,
               Recall = |set(top K) & set(truth)| / len(truth), DCG over the ranked positions in the
               truth, IDCG over min(K, len(truth)); users without history or truth skipped; the user
               sample of main() (a fraction of the test users), here drawn once and written out
  recommender  the released src/recommender.py (BaseRecommender.recommend) with
               scripts/run_experiment.py and src/metrics.py: history = the last 10 train items,
               the plain mean, cosine, those 10 items masked (-inf), truth = the test lines;
               Recall over the set of truth items, IDCG (and MAP's divisor) over len(truth) with
               repeats; users with a train history and a truth
Models: bert, vision, 0.5 * bert + 0.5 * vision (mean-raw:), [bert, vision] (concat-raw:).
Metrics: recall, ndcg, hit at K = 5, 10, 20.

The vectors are drawn again (next seed) until no two scores within any user's top 21 are closer
than 1e-5, so float32 rounding in vlm4rec cannot reorder a list.

Run (numpy only): python3 tests/reference/released_eval.py [OUT_DIR]
"""

import os
import sys

import numpy as np

N_USERS, N_ITEMS, DIM = 60, 150, 24
KS = (5, 10, 20)
SAMPLE_FRACTION = 0.5
MIN_GAP = 1e-5


def build_interactions(rng, bert):
    """Per user: train, valid and test item lists, in time order, drawn by the user's taste (a
    direction in the bert space), so that the rankings find some of the truth."""
    unit = bert / np.linalg.norm(bert, axis=1, keepdims=True)
    data = []
    for u in range(N_USERS):
        taste = rng.normal(size=DIM)
        p = np.exp(4.0 * unit @ (taste / np.linalg.norm(taste)))
        p /= p.sum()
        kind = u % 12
        n_train = 0 if kind == 5 else int(rng.integers(3, 16))  # u % 12 == 5: no history at all
        n_valid = int(rng.integers(0, 3))
        if kind == 5:
            n_valid = 0
        n_test = 0 if kind == 7 else int(rng.integers(1, 5))  # u % 12 == 7: no truth
        picks = rng.choice(N_ITEMS, size=n_train + n_valid + n_test, replace=False, p=p)
        train = [int(i) for i in picks[:n_train]]
        valid = [int(i) for i in picks[n_train:n_train + n_valid]]
        test = [int(i) for i in picks[n_train + n_valid:]]
        if test and u % 3 == 0:  # a repeated test line (a repeat purchase in the test period)
            test.append(test[int(rng.integers(0, len(test)))])
        if test and u % 10 == 1 and train:  # a test item the user already had in train
            test.append(train[-1])
        data.append((train, valid, test))
    return data


def build_vectors(rng):
    def block():
        m = rng.normal(size=(N_ITEMS, DIM))
        m *= np.exp(rng.uniform(np.log(0.05), np.log(20.0), size=(N_ITEMS, 1)))  # norms 0.05 .. 20
        return m.astype(np.float32)
    bert, vision = block(), block()
    vision[77] = 0  # an item without a vision vector
    return bert, vision


def models(bert, vision):
    return {"bert": bert, "vision": vision,
            "mean-raw": (np.float32(0.5) * bert + np.float32(0.5) * vision).astype(np.float32),
            "concat-raw": np.concatenate([bert, vision], axis=1)}


def cosine_to_all(profile, items):
    """sklearn.metrics.pairwise.cosine_similarity(profile[None], items)[0]: rows normalized, zero rows stay 0."""
    def unit(m):
        n = np.linalg.norm(m, axis=-1, keepdims=True)
        n[n == 0] = 1
        return m / n
    return unit(items) @ unit(profile[None, :])[0]


def gaps_ok(scores, masked=()):
    s = np.array(scores, dtype=np.float64)
    s[list(masked)] = -np.inf
    top = np.sort(s[np.isfinite(s)])[::-1][:max(KS) + 1]
    return bool(np.all(np.diff(-top) > MIN_GAP))


def released_case(E, data, sample):
    """evaluate_all_final.py: evaluate_recommender, at several K."""
    E = E.astype(np.float64)
    per = {k: ([], [], []) for k in KS}
    ok = True
    for u in sample:
        train, valid, test = data[u]
        history = train + valid
        if len(history) == 0:
            continue
        scores = cosine_to_all(E[history].mean(axis=0), E)
        ok &= gaps_ok(scores)
        ranked = list(np.argsort(-scores))
        if len(test) == 0:
            continue
        for k in KS:
            top = ranked[:k]
            hits = len(set(top) & set(test))
            dcg = sum(1.0 / np.log2(i + 2) if ranked[i] in test else 0.0 for i in range(k))
            idcg = sum(1.0 / np.log2(i + 2) for i in range(min(k, len(test))))
            per[k][0].append(hits / len(test))
            per[k][1].append(dcg / idcg if idcg > 0 else 0.0)
            per[k][2].append(1.0 if hits > 0 else 0.0)
    return per, ok


def recommender_case(E, data):
    """recommender.py recommend(exclude_history=True) on the last 10 train items; metrics.py."""
    E = E.astype(np.float64)
    per = {k: ([], [], []) for k in KS}
    ok = True
    for u in range(N_USERS):
        train, _, test = data[u]
        if not train or not test:  # run_experiment.py: users with a train history and a truth
            continue
        recent = train[-10:]
        sims = cosine_to_all(E[recent].mean(axis=0), E)
        ok &= gaps_ok(sims, recent)
        sims[recent] = -np.inf
        predicted = list(np.argsort(sims)[-max(KS):][::-1])
        actual_set = set(test)
        for k in KS:
            pk = predicted[:k]
            hits = len(set(pk) & actual_set)
            dcg = sum(1.0 / np.log2(i + 2) for i, it in enumerate(pk) if it in actual_set)
            idcg = sum(1.0 / np.log2(i + 2) for i in range(min(len(test), k)))
            per[k][0].append(hits / len(actual_set))
            per[k][1].append(dcg / idcg if idcg else 0.0)
            per[k][2].append(1.0 if hits else 0.0)
    return per, ok


def write_tsv(path, header, rows):
    with open(path, "w") as f:
        f.write(header + "\n")
        for r in rows:
            f.write("\t".join(str(x) for x in r) + "\n")


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "data", "released-eval")
    os.makedirs(os.path.join(out, "features"), exist_ok=True)
    for seed in range(1000, 2000):
        rng = np.random.default_rng(seed)
        bert, vision = build_vectors(rng)
        data = build_interactions(rng, bert)
        test_users = [u for u in range(N_USERS) if data[u][2]]
        size = max(1, int(len(test_users) * SAMPLE_FRACTION))
        sample = sorted(int(u) for u in rng.choice(test_users, size=size, replace=False))
        results, clean = [], True
        for name, E in models(bert, vision).items():
            for case, (per, ok) in (("released", released_case(E, data, sample)),
                                    ("recommender", recommender_case(E, data))):
                clean &= ok
                for k in KS:
                    for metric, vals in zip(("recall", "ndcg", "hit"), per[k]):
                        results.append((case, name, "%s@%d" % (metric, k), "%.12f" % np.mean(vals)))
        if clean:
            break
    else:
        sys.exit("no seed without near-ties")
    uid, iid = (lambda u: "u%02d" % u), (lambda i: "i%03d" % i)
    write_tsv(os.path.join(out, "items.tsv"), "item\ttitle\timage", [(iid(i), "", "") for i in range(N_ITEMS)])
    write_tsv(os.path.join(out, "users.tsv"), "user", [(uid(u),) for u in range(N_USERS)])
    for split, col, t0 in (("train", 0, 1000), ("valid", 1, 2000), ("test", 2, 3000)):
        rows = [(uid(u), iid(i), t0 + n) for u in range(N_USERS) for n, i in enumerate(data[u][col])]
        write_tsv(os.path.join(out, split + ".tsv"), "user\titem\ttimestamp", rows)
    np.save(os.path.join(out, "features", "bert.npy"), bert)
    np.save(os.path.join(out, "features", "vision.npy"), vision)
    with open(os.path.join(out, "sample-users.txt"), "w") as f:
        f.write("".join(uid(u) + "\n" for u in sample))
    write_tsv(os.path.join(out, "expected.tsv"), "case\tmodel\tmetric\tvalue", results)
    print("seed %d: %d users sampled of %d with test lines; %d expected values written to %s"
          % (seed, len(sample), len(test_users), len(results), out))


if __name__ == "__main__":
    main()
