#!/usr/bin/env python3
"""SMORE goldens from the official model code, for tests/test_smore_golden.c.

Run (from the repository root, with the reference Python environment: torch, numpy, scipy):

    build/tests/test_smore_golden --export tests/data/smore-golden     # vlm4rec's inputs
    python tests/reference/smore_golden.py --smore-src /path/to/SMORE/src \
        --data tests/data/smore-golden

--smore-src is the `src` folder of a checkout of github.com/kennethorq/SMORE (the folder holding
models/smore.py, utils/utils.py, common/abstract_recommender.py). The script imports the official
SMORE class from there, builds it on the exported catalog as MMRec would (a config dict with the
keys the constructor reads, the features as .npy files in a data folder, a minimal data loader
with inter_matrix), loads vlm4rec's exported initial parameters into it (load_state_dict,
strict), and runs it on the CPU in float32.

Reads (from --data): config.json (sizes and SMORE's settings), interactions.npy (user, item rows),
text.npy, vision.npy (the item features), batch.npy (user, pos, neg rows), init.safetensors
(vlm4rec's initial parameters under the official state dict's names).

Writes (into --data; float32 .npy, dense):
  image_adj, text_adj, fusion_adj   the item-item graphs (image_original_adj, text_original_adj,
                                    fusion_adj), items x items
  norm_adj, R                       the normalized user-item graph and its user block
  image_conv, text_conv, fusion_conv  spectrum_convolution's outputs, items x dim
  image_embeds, text_embeds, fusion_embeds  the side views inside forward (users + items) x dim,
                                    before the preference weighting
  content_embeds, side_embeds       forward(train=True)'s views, (users + items) x dim
  user_embeddings, item_embeddings  forward()'s final vectors
  scores                            full_sort_predict for every user, users x items
  loss                              [mf_loss, emb_loss, InfoNCE items + users (unweighted),
                                    calculate_loss] of the batch
and grads.safetensors: the gradient of calculate_loss for every parameter (official names), and
provenance.json: the versions of torch, numpy and scipy and the SHA-256 of the official files used.

Adaptations the official code needs off its framework, none of which changes a value:
  - Tensor.cuda is made the identity (the constructor moves the item graphs with .cuda());
  - torch_scatter.scatter_add (imported by utils.get_sparse_laplacian) is provided as
    torch.Tensor.scatter_add_ over a zero vector of dim_size (its definition for 1-D inputs);
  - dropout_rate 0, so train and eval modes agree (vlm4rec has no dropout);
  - the adjacency caches (image_adj_K_True.pt) go to a fresh temporary folder.
The side views (image_embeds, ...) are not returned by forward: they are recorded as the outputs
of forward's torch.cat calls (users, then items) through a TorchFunctionMode, and checked against
the input query_v receives.
"""
import argparse
import hashlib
import json
import os
import struct
import sys
import tempfile
import types

import numpy as np
import scipy
import scipy.sparse as sp
import torch
from torch.overrides import TorchFunctionMode


def read_safetensors(path):
    with open(path, 'rb') as f:
        blob = f.read()
    (n,) = struct.unpack('<Q', blob[:8])
    header = json.loads(blob[8:8 + n])
    out = {}
    for name, entry in header.items():
        if name == '__metadata__':
            continue
        assert entry['dtype'] == 'F32', (path, name, entry['dtype'])
        start, end = entry['data_offsets']
        data = np.frombuffer(blob[8 + n + start:8 + n + end], dtype='<f4')
        out[name] = data.reshape(entry['shape']).copy()
    return out


def write_safetensors(path, tensors):
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        data = np.ascontiguousarray(tensors[name], dtype='<f4')
        header[name] = {'dtype': 'F32', 'shape': list(data.shape), 'data_offsets': [offset, offset + data.nbytes]}
        chunks.append(data.tobytes())
        offset += data.nbytes
    text = json.dumps(header, separators=(',', ':')).encode()
    text += b' ' * (-len(text) % 8)
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        f.write(struct.pack('<Q', len(text)) + text + b''.join(chunks))
    os.replace(tmp, path)


def save(data_dir, name, tensor):
    array = tensor.detach().to_dense().numpy() if tensor.is_sparse else tensor.detach().numpy()
    array = np.ascontiguousarray(array, dtype=np.float32)
    if array.ndim == 0:
        array = array.reshape(1)
    tmp = os.path.join(data_dir, name + '.tmp.npy')
    np.save(tmp, array)
    os.replace(tmp, os.path.join(data_dir, name + '.npy'))


def provide_framework_shims():
    """What the official code expects of its environment (a GPU, torch_scatter)."""
    torch.Tensor.cuda = lambda self, *args, **kwargs: self
    shim = types.ModuleType('torch_scatter')

    def scatter_add(src, index, dim=0, dim_size=None):
        assert dim == 0 and src.dim() == 1
        size = dim_size if dim_size is not None else int(index.max()) + 1
        return torch.zeros(size, dtype=src.dtype, device=src.device).scatter_add_(0, index, src)

    shim.scatter_add = scatter_add
    sys.modules['torch_scatter'] = shim


class TinyDataset:
    def __init__(self, n_users, n_items):
        self.n_users, self.n_items = n_users, n_items

    def get_user_num(self):
        return self.n_users

    def get_item_num(self):
        return self.n_items


class TinyLoader:
    """MMRec's TrainDataLoader as far as SMORE's constructor uses it."""

    def __init__(self, n_users, n_items, inter):
        self.dataset = TinyDataset(n_users, n_items)
        self.inter = inter

    def inter_matrix(self, form='coo'):
        assert form == 'coo'
        ones = np.ones(len(self.inter), dtype=np.float32)
        return sp.coo_matrix((ones, (self.inter[:, 0], self.inter[:, 1])),
                             shape=(self.dataset.n_users, self.dataset.n_items))


def build_config(cfg, feature_root):
    return {
        'USER_ID_FIELD': 'user_id:token', 'ITEM_ID_FIELD': 'item_id:token', 'NEG_PREFIX': 'neg__',
        'train_batch_size': cfg['train_batch_size'], 'device': torch.device('cpu'),
        'end2end': False, 'is_multimodal_model': True,
        'data_path': feature_root + os.sep, 'dataset': 'tiny',
        'vision_feature_file': 'image_feat.npy', 'text_feature_file': 'text_feat.npy',
        'embedding_size': cfg['embedding_size'], 'n_ui_layers': cfg['n_ui_layers'], 'n_layers': cfg['n_layers'],
        'reg_weight': cfg['reg_weight'], 'cl_loss': cfg['cl_loss'], 'image_knn_k': cfg['image_knn_k'],
        'text_knn_k': cfg['text_knn_k'], 'dropout_rate': cfg['dropout_rate'],
    }


class RecordCat(TorchFunctionMode):
    def __init__(self):
        super().__init__()
        self.outputs = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if func is torch.cat:
            self.outputs.append(out)
        return out


def side_views(model):
    """image_embeds, text_embeds, fusion_embeds as forward computes them."""
    received = []
    hook = model.query_v.register_forward_hook(lambda mod, inputs, output: received.append(inputs[0]))
    with RecordCat() as rec:
        model.forward(model.norm_adj)
    hook.remove()
    # forward concatenates the ego embeddings, then the image, text and fusion views
    assert len(rec.outputs) == 4, len(rec.outputs)
    image, text, fusion = rec.outputs[1:]
    assert torch.equal(fusion, received[0])
    return image, text, fusion


def write_goldens(model, data_dir, batch, cfg):
    save(data_dir, 'image_adj', model.image_original_adj)
    save(data_dir, 'text_adj', model.text_original_adj)
    save(data_dir, 'fusion_adj', model.fusion_adj)
    save(data_dir, 'norm_adj', model.norm_adj)
    save(data_dir, 'R', model.R)
    with torch.no_grad():
        image_feats = model.image_trs(model.image_embedding.weight)
        text_feats = model.text_trs(model.text_embedding.weight)
        for name, value in zip(('image_conv', 'text_conv', 'fusion_conv'),
                               model.spectrum_convolution(image_feats, text_feats)):
            save(data_dir, name, value)
        for name, value in zip(('image_embeds', 'text_embeds', 'fusion_embeds'), side_views(model)):
            save(data_dir, name, value)
        users, items, side, content = model.forward(model.norm_adj, train=True)
        save(data_dir, 'content_embeds', content)
        save(data_dir, 'side_embeds', side)
        users, items = model.forward(model.norm_adj)
        save(data_dir, 'user_embeddings', users)
        save(data_dir, 'item_embeddings', items)
        save(data_dir, 'scores', model.full_sort_predict((torch.arange(cfg['n_users']),)))
    interaction = [torch.from_numpy(batch[:, k].astype(np.int64)) for k in range(3)]
    u, p, n = interaction
    with torch.no_grad():  # the parts, as calculate_loss composes them
        ua, ia, side, content = model.forward(model.norm_adj, train=True)
        mf_loss, emb_loss, reg_loss = model.bpr_loss(ua[u], ia[p], ia[n])
        side_u, side_i = torch.split(side, [model.n_users, model.n_items], dim=0)
        content_u, content_i = torch.split(content, [model.n_users, model.n_items], dim=0)
        cl = model.InfoNCE(side_i[p], content_i[p], 0.2) + model.InfoNCE(side_u[u], content_u[u], 0.2)
    model.zero_grad()
    total = model.calculate_loss(interaction)
    total.backward()
    recomposed = mf_loss + emb_loss + reg_loss + model.cl_loss * cl
    assert abs(total.item() - recomposed.item()) < 1e-5, (total.item(), recomposed.item())
    save(data_dir, 'loss', torch.stack([mf_loss, emb_loss, cl, total.detach()]))
    grads = {name: q.grad.numpy() for name, q in model.named_parameters()}
    write_safetensors(os.path.join(data_dir, 'grads.safetensors'), grads)
    return float(total)


def write_provenance(data_dir, smore_src):
    files = ('models/smore.py', 'utils/utils.py', 'common/abstract_recommender.py')
    record = {
        'generator': 'tests/reference/smore_golden.py',
        'official_code': 'github.com/kennethorq/SMORE, src/',
        'sha256': {f: hashlib.sha256(open(os.path.join(smore_src, f), 'rb').read()).hexdigest() for f in files},
        'torch': torch.__version__, 'numpy': np.__version__, 'scipy': scipy.__version__,
    }
    with open(os.path.join(data_dir, 'provenance.json'), 'w') as f:
        json.dump(record, f, indent=2)
        f.write('\n')


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('--smore-src', required=True, help='the src folder of the official SMORE checkout')
    ap.add_argument('--data', default='tests/data/smore-golden', help='the exported inputs; goldens go here')
    args = ap.parse_args()
    data_dir = args.data
    with open(os.path.join(data_dir, 'config.json')) as f:
        cfg = json.load(f)
    assert cfg['temperature'] == 0.2, 'the official calculate_loss fixes the InfoNCE temperature at 0.2'
    inter = np.load(os.path.join(data_dir, 'interactions.npy')).astype(np.int64)
    batch = np.load(os.path.join(data_dir, 'batch.npy')).astype(np.int64)
    init = read_safetensors(os.path.join(data_dir, 'init.safetensors'))

    provide_framework_shims()
    sys.path.insert(0, os.path.abspath(args.smore_src))
    from models.smore import SMORE

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(os.path.join(root, 'tiny'))
        np.save(os.path.join(root, 'tiny', 'image_feat.npy'), np.load(os.path.join(data_dir, 'vision.npy')))
        np.save(os.path.join(root, 'tiny', 'text_feat.npy'), np.load(os.path.join(data_dir, 'text.npy')))
        model = SMORE(build_config(cfg, root), TinyLoader(cfg['n_users'], cfg['n_items'], inter))
    model.load_state_dict({k: torch.from_numpy(v) for k, v in init.items()}, strict=True)
    model.train()
    total = write_goldens(model, data_dir, batch, cfg)
    write_provenance(data_dir, args.smore_src)
    print('%s: goldens of the official SMORE written; loss %.6f' % (data_dir, total))


if __name__ == '__main__':
    main()
