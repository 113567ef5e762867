#!/usr/bin/env python3
"""Independent check of the converted weights and of the endpoint fixture layout.

Recomputes the first endpoints (Conv3d_1a_7x7, MaxPool3d_2a_3x3, Conv3d_2c_3x3) of the 16-frame fixture clip
with jax.lax in NCDHW/OIDHW layout, reading weights/i3d-kinetics400-rgb.safetensors and padding explicitly with
TF SAME's asymmetric pads (docs/continual.md, "Padding and fill"), and compares with tests/fixtures/i3d/endpoints.safetensors (made by the
flax model from the pickle). Agreement shows the OIDHW permutation, names, BN (eps 1e-3, no gamma) and the
fixture's (C,T,H,W) corner layout are consistent.  Run: python tools/i3d/check_layout.py
"""
import jax, numpy as np, jax.numpy as jnp
jax.config.update("jax_default_matmul_precision", "highest")
from safetensors.numpy import load_file
W = load_file('weights/i3d-kinetics400-rgb.safetensors')
F = load_file('tests/fixtures/i3d/frames_u8.safetensors')['frames_u8']
E = load_file('tests/fixtures/i3d/endpoints.safetensors')
x = (F.astype(np.float32)/np.float32(127.5)-np.float32(1)).transpose(3,0,1,2)[None]  # N C T H W
def unit(x, name, stride, pads):
    y = jax.lax.conv_general_dilated(x, W[name+'.conv.weight'], stride, pads, dimension_numbers=('NCDHW','OIDHW','NCDHW'))
    m, v, b = (W[name+'.bn.'+k][None,:,None,None,None] for k in ('running_mean','running_var','bias'))
    return jnp.maximum((y-m)/jnp.sqrt(v+1e-3)+b, 0)
y = unit(x, 'Conv3d_1a_7x7', (2,2,2), [(2,3),(2,3),(2,3)])
p = jax.lax.reduce_window(jnp.pad(y, [(0,0),(0,0),(0,0),(0,1),(0,1)]), -jnp.inf, jax.lax.max, (1,1,1,3,3), (1,1,1,2,2), 'VALID')
z = unit(p, 'Conv3d_2b_1x1', (1,1,1), [(0,0)]*3)
z = unit(z, 'Conv3d_2c_3x3', (1,1,1), [(1,1)]*3)
for name, a in [('Conv3d_1a_7x7', y), ('MaxPool3d_2a_3x3', p), ('Conv3d_2c_3x3', z)]:
    a = np.asarray(a)[0]; C,T,H,Wd = a.shape
    assert list(E[f'ep.{name}.shape']) == [C,T,H,Wd], (E[f'ep.{name}.shape'], a.shape)
    ch = E[f'ep.{name}.channels']; s = a[ch][:, [0, T-1]]
    worst = max(np.abs(s[:,:,:2,:2]-E[f'ep.{name}.tl']).max(), np.abs(s[:,:,H-2:,Wd-2:]-E[f'ep.{name}.br']).max())
    assert worst < 1e-5, f'{name}: corners differ by {worst}'
    print(name, a.shape, 'tl', np.abs(s[:,:,:2,:2]-E[f'ep.{name}.tl']).max(), 'br', np.abs(s[:,:,H-2:,Wd-2:]-E[f'ep.{name}.br']).max(),
          'tmean', np.abs(a.astype(np.float64).mean((0,2,3))-E[f'ep.{name}.tmean']).max(),
          'sum rel', abs(a.astype(np.float64).sum()-E[f'ep.{name}.sum'][0])/E[f'ep.{name}.sum'][1])
print('OK: converted weights reproduce the flax endpoints')
