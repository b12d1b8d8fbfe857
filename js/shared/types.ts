// Mirrors the synced traits of lucid_widgets.widget.LivePreview / Microscope (Python side):
// PreviewTraits are LivePreview's, MicroscopeTraits adds the Microscope's. Names and kinds are
// checked against the Python classes by tests/widget/test_trait_contract.py; see docs/WIDGET_DOM.md.
import type { UnitView } from "./views";

export type { UnitView };

/** One row of the layer catalog (lucid_widgets.zoo.layers -> LayerInfo as a dict). */
export interface LayerRow {
  name: string;
  alias: string | null;
  type: string;
  shape: number[];
  units: number | null;
  kind: string;
  browsable: boolean;
  depth: number;
  group: string;
  order: number;
}

/** widget_engine.PARAMS: the image parameterizations of the preview and the grid. */
export const PARAMS = ["fft", "pixel", "maco"] as const;
export type Param = (typeof PARAMS)[number];

/** widget_engine.PreviewConfig */
export interface PreviewSettings {
  steps: number;
  size: number;
  lr: number;
  seed: number;
  param: Param;
  decorrelate: boolean;
  alpha: boolean;
  transforms: boolean;
  batch: number;
  diversity: number;
}

/** widget_engine.GridConfig */
export interface GridSettings {
  size: number;
  steps: number;
  param: Param;
  decorrelate: boolean;
  transforms: boolean;
  batch_size: number;
  seed: number;
}

/** expression.ExpressionError.to_dict(); position -1 for errors found while running. */
export interface ObjectiveError {
  message?: string;
  position?: number;
  end?: number;
  expected?: string;
  suggestions?: string[];
}

export interface FrameMeta {
  batch?: number;
  width?: number;
  height?: number;
  columns?: number;
  step?: number;
  mime?: string;
}

/** One thumbnail inside grid_blob: bytes [offset, offset + length). */
export interface GridIndexEntry {
  unit: number;
  offset: number;
  length: number;
  mime: string;
}

export interface GridProgress {
  layer?: string;
  page?: number;
  state?: "rendering" | "done" | "stopped" | "error";
  rendered?: number;
  total?: number;
  batch?: number[];
  batch_step?: number;
  steps?: number;
}

/** One encoded image inside a blob trait: bytes [offset, offset + length). */
export interface BlobEntry {
  offset: number;
  length: number;
  mime: string;
}

/** widget_examples: state of the dataset-examples pass. */
export interface ExamplesStatus {
  state?: "idle" | "waiting" | "running" | "done" | "stopped" | "error";
  layer?: string;
  size?: number | null;
  /** images seen when the pass was stopped (state "stopped") */
  done?: number;
  k?: number;
  skipped?: number;
  complete?: boolean;
  /** "atlas": the examples come from the atlas's dataset pass */
  source?: "atlas";
  message?: string;
}

/** One top / bottom dataset example of the open unit (images in unit_examples_blob). */
export interface ExampleItem {
  which: "top" | "bottom";
  rank: number;
  value: number;
  index: number;
  source: string;
  box: number[];
  image: BlobEntry;
  crop: BlobEntry;
}

export interface UnitExamples {
  layer?: string;
  unit?: number;
  k?: number;
  items?: ExampleItem[];
  source?: "atlas";
}

export interface GridExamples {
  layer?: string;
  page?: number;
  items?: (BlobEntry & { unit: number; value: number })[];
}

/** Where the Microscope on an atlas stands (lucid_widgets.widget.atlas_source.AtlasSource). */
export interface AtlasInfo {
  folder?: string;
  model?: string;
  views?: string[];
  write_back?: boolean;
  stored?: number;
  written?: number;
  write_error?: string;
  unit?: "" | "atlas" | "live";
  layers?: Record<string, string>;
}

export interface Prediction {
  index: number;
  label: string;
  probability: number;
  logit: number;
}

export interface SampleUnit {
  unit: number;
  value: number;
  map: BlobEntry;
  thumb: BlobEntry | null;
}

/** widget_sample: the sample image's predictions and the selected layer's top units. */
export interface SampleInfo {
  state?: "running" | "done" | "error";
  name?: string;
  message?: string;
  width?: number;
  height?: number;
  predictions?: Prediction[];
  layer?: string;
  units?: SampleUnit[];
}

/** One connected unit of the open unit (images in unit_connections_blob). */
export interface ConnectionItem {
  unit: number;
  strength: number;
  thumb: BlobEntry | null;
  kernel: BlobEntry | null;
}

/** widget_connections: one side (inputs from the previous layer, outputs to the next). */
export interface ConnectionSide {
  layer?: string;
  method?: "expanded_weights" | "attribution";
  images?: number;
  items?: ConnectionItem[];
  error?: string;
}

/** Where the open unit's connections come from: an atlas's store, or computed live. */
export type ConnectionSource = "atlas" | "live";

/** widget_connections: the open unit's connections (one shape, whatever the source). */
export interface UnitConnections {
  state?: "running" | "waiting" | "rendering" | "done" | "stopped";
  source?: ConnectionSource;
  layer?: string;
  unit?: number;
  inputs?: ConnectionSide;
  outputs?: ConnectionSide;
}

/** The Sample panel's views (widget_blocks_panel.SAMPLE_VIEWS). */
export type SampleViewName = "units" | "groups" | "dictionary" | "grid" | "attribution";

export interface NeuronGroupItem {
  group: number;
  color: number[];
  attribution: number | null;
  units: number[];
  map: BlobEntry;
  image: BlobEntry | null;
}

export interface AttributedUnit {
  unit: number;
  value: number;
  thumb: BlobEntry | null;
}

export interface GridCell {
  y: number;
  x: number;
  image: BlobEntry;
}

/** widget_blocks_panel: the current sample view (images in sample_blocks_blob). */
export interface SampleBlocks {
  state?: "running" | "rendering" | "done" | "stopped" | "error";
  layer?: string;
  view?: SampleViewName;
  message?: string;
  target?: number | null;
  target_label?: string;
  // groups
  groups?: NeuronGroupItem[];
  overlay?: BlobEntry;
  error?: number;
  // dictionary (units / values: [y][x][rank]) and grid (height x width cells)
  height?: number;
  width?: number;
  units?: number[][][];
  values?: number[][][];
  thumbs?: Record<string, BlobEntry>;
  peak?: number;
  cells?: GridCell[];
  skipped?: number[][];
  // attribution
  score?: number;
  total?: number;
  heatmap?: BlobEntry;
  supporting?: AttributedUnit[];
  opposing?: AttributedUnit[];
}

export type RunStatus = "idle" | "running" | "paused" | "done" | "error";

/** Binary traits arrive as DataView (ipywidgets); the static export uses the same. */
export type Binary = DataView | ArrayBuffer | Uint8Array | null;

/** lucid_widgets.widget.LivePreview's synced traits. */
export interface PreviewTraits {
  mode: "live" | "microscope";
  readonly: boolean;
  external: boolean;
  model_name: string;
  layers: LayerRow[];
  objective: string;
  objective_applied: string;
  objective_error: ObjectiveError;
  settings: PreviewSettings;
  running: boolean;
  status: RunStatus;
  message: string;
  step: number;
  total_steps: number;
  losses: number[];
  frame: Binary;
  frame_meta: FrameMeta;
}

/** lucid_widgets.widget.Microscope's synced traits: LivePreview's and these. */
export interface MicroscopeTraits extends PreviewTraits {
  layer: string;
  unit: number;
  grid_kind: "channel" | "neuron";
  grid_negative: boolean;
  grid_settings: GridSettings;
  page: number;
  page_size: number;
  grid_blob: Binary;
  grid_index: GridIndexEntry[];
  grid_progress: GridProgress;
  grid_view: "visualization" | "example";
  grid_examples: GridExamples;
  grid_examples_blob: Binary;
  unit_view: UnitView;
  examples_k: number;
  examples_status: ExamplesStatus;
  unit_examples: UnitExamples;
  unit_examples_blob: Binary;
  sample_image: Binary;
  sample_info: SampleInfo;
  sample_blob: Binary;
  unit_connections: UnitConnections;
  unit_connections_blob: Binary;
  sample_view: SampleViewName;
  sample_target: number;
  sample_blocks: SampleBlocks;
  sample_blocks_blob: Binary;
  atlas_info: AtlasInfo;
}

/** One front end renders both widgets (it reads `mode`); a LivePreview lacks the Microscope's. */
export type WidgetTraits = MicroscopeTraits;

export type TraitName = keyof WidgetTraits;

/** Messages sent to Python with model.send (LivePreview._on_front_end_message). */
export type Action =
  | { type: "start" }
  | { type: "stop" }
  | { type: "resume" }
  | { type: "restart" }
  | { type: "grid_resume" }
  | { type: "open_unit"; unit: number; layer?: string }
  | { type: "unit_view"; view: UnitView }
  | { type: "sample_upload"; name: string }
  | { type: "sample_example"; index: number }
  | { type: "sample_view"; view: SampleViewName }
  | { type: "sample_target"; index: number }
  | { type: "open_group"; group: number };

/** The part of anywidget's model interface this front end uses. */
export interface AnyModel {
  get<K extends TraitName>(key: K): WidgetTraits[K];
  set<K extends TraitName>(key: K, value: WidgetTraits[K]): void;
  save_changes(): void;
  on(event: string, callback: () => void): void;
  off(event?: string | null, callback?: (() => void) | null): void;
  send(content: Action, callbacks?: unknown, buffers?: ArrayBuffer[]): void;
}

export interface RenderProps {
  model: AnyModel;
  el: HTMLElement;
}
