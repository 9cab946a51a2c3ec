// Workgroup reductions through subgroup operations: the `subgroups` kernel variant's form of
// the prelude's workgroupMax / workgroupSum. src/engine/gpu/shaders.ts composes this file after
// the prelude only into modules built with SUBGROUPS = true, whose own text begins with
// `enable subgroups;` (without the feature the functions below do not compile, so the
// fallback modules never see them).
//
// A reduction first combines within each subgroup (subgroupMax / subgroupAdd), then one
// invocation per subgroup writes the subgroup's result to workgroup memory, and every subgroup
// combines those partials again: lane i takes partials i, i + size, … (one each unless the
// subgroups outnumber the lanes), then subgroupMax / subgroupAdd over the lanes. Every subgroup
// sees the same values in the same lanes, so all threads get the same result. Two barriers
// instead of the tree's log2(wg) + 2, and no thread reads every partial one after another.
//   sg = (subgroup_size, subgroup_invocation_id), the entry point's builtins.
// WebGPU lets the subgroup size be any power of two from 4 to 128 (and differ between
// pipelines), so nothing here assumes one: a workgroup of `wg` threads (a power of two ≤ 256)
// has ceil(wg / size) subgroups, one when a subgroup is at least as wide as the workgroup.
// Subgroup k is taken to be the invocations k·size … k·size + size − 1 of
// local_invocation_index, the layout Vulkan, D3D12 and Metal give a one-dimensional workgroup
// (src/engine/gpu/subgroup-layout.ts probes it on the device before a run turns these on).
// Every thread of the workgroup must call these in uniform control flow, and gets the result.
// subgroupAdd's order of additions is the implementation's: sums differ in the last bits from
// the tree's, the same on every run of one adapter (hence a variant recorded in checkpoints).

var<workgroup> subgroupPartials: array<f32, 64>; // 256 threads / the smallest subgroup of 4

fn subgroupsMax(v: f32, lid: u32, wg: u32, sg: vec2u) -> f32 {
  let t = subgroupMax(v);
  if (sg.y == 0u) { subgroupPartials[lid / sg.x] = t; }
  workgroupBarrier();
  var r = subgroupPartials[0];
  let parts = (wg + sg.x - 1u) / sg.x;
  for (var k = sg.y; k < parts; k += sg.x) { r = max(r, subgroupPartials[k]); }
  r = subgroupMax(r);
  workgroupBarrier(); // everyone has read the partials before the next call overwrites them
  return r;
}

fn subgroupsSum(v: f32, lid: u32, wg: u32, sg: vec2u) -> f32 {
  let t = subgroupAdd(v);
  if (sg.y == 0u) { subgroupPartials[lid / sg.x] = t; }
  workgroupBarrier();
  var r = 0.0;
  let parts = (wg + sg.x - 1u) / sg.x;
  for (var k = sg.y; k < parts; k += sg.x) { r += subgroupPartials[k]; }
  r = subgroupAdd(r);
  workgroupBarrier();
  return r;
}
