// Unit detail: the live preview image, step counter, loss sparkline, Stop / Resume / Restart.
import { objectUrl, toBytes } from "../shared/binary";
import { Bindings, formatNumber, h, svg } from "../shared/dom";
import { objectiveEditor } from "./editor";
import { previewSettingsForm } from "./settings";
import type { AnyModel } from "../shared/types";

function sparkline(): { root: SVGElement; draw: (values: number[]) => void } {
  const width = 240;
  const height = 44;
  const root = svg("svg", {
    class: "lw-sparkline",
    "data-testid": "lw-sparkline",
    viewBox: `0 0 ${width} ${height}`,
    preserveAspectRatio: "none",
    role: "img",
    "aria-label": "loss curve",
  });
  const area = svg("path", { class: "lw-spark-area" });
  const line = svg("polyline", { class: "lw-spark-line", fill: "none" });
  root.append(area, line);
  const draw = (values: number[]): void => {
    root.setAttribute("data-points", String(values.length));
    if (values.length < 2) {
      line.setAttribute("points", "");
      area.setAttribute("d", "");
      return;
    }
    const finite = values.filter(Number.isFinite);
    const low = Math.min(...finite);
    const high = Math.max(...finite);
    const span = high - low || 1;
    const points = values.map((value, index) => {
      const x = (index / (values.length - 1)) * width;
      const y = 3 + (1 - ((Number.isFinite(value) ? value : high) - low) / span) * (height - 6);
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    line.setAttribute("points", points.join(" "));
    area.setAttribute("d", `M0,${height} L${points.join(" L")} L${width},${height} Z`);
  };
  return { root, draw };
}

export function previewPanel(model: AnyModel, bindings: Bindings): HTMLElement {
  const image = h("img", { class: "lw-preview", "data-testid": "lw-preview", alt: "feature visualization" });
  const placeholder = h("div", { class: "lw-preview-empty", "data-testid": "lw-preview-empty" }, "No image yet");
  const statusDot = h("span", { class: "lw-status", "data-testid": "lw-status" });
  const stepText = h("span", { class: "lw-step", "data-testid": "lw-step" });
  const lossText = h("span", { class: "lw-loss", "data-testid": "lw-loss" });
  const spark = sparkline();
  const stop = h("button", { type: "button", class: "lw-button", "data-testid": "lw-stop" }, "Stop");
  const resume = h("button", { type: "button", class: "lw-button lw-primary", "data-testid": "lw-resume" }, "Resume");
  const restart = h("button", { type: "button", class: "lw-button", "data-testid": "lw-restart", title: "New parameters, step 0" }, "Restart");
  const message = h("div", { class: "lw-message", "data-testid": "lw-message", role: "status" });
  const root = h(
    "section",
    { class: "lw-detail", "data-testid": "lw-detail" },
    h("div", { class: "lw-preview-wrap" }, image, placeholder),
    h(
      "div",
      { class: "lw-side" },
      h("div", { class: "lw-run-head" }, statusDot, stepText, lossText),
      spark.root,
      h("div", { class: "lw-buttons" }, stop, resume, restart),
      objectiveEditor(model, bindings),
      previewSettingsForm(model, bindings),
      message,
    ),
  );
  let url: string | null = null;
  bindings.add(() => url && URL.revokeObjectURL(url));

  const drawFrame = (): void => {
    const bytes = toBytes(model.get("frame"));
    if (url) URL.revokeObjectURL(url);
    url = bytes && bytes.length ? objectUrl(bytes, model.get("frame_meta")?.mime) : null;
    if (url) image.src = url;
    else image.removeAttribute("src");
    image.hidden = !url;
    placeholder.hidden = Boolean(url);
    const meta = model.get("frame_meta") ?? {};
    image.dataset.step = String(meta.step ?? "");
    image.dataset.batch = String(meta.batch ?? "");
    const side = Math.max(meta.width ?? 0, meta.height ?? 0);
    image.classList.toggle("lw-pixelated", side > 0 && side < 128);
  };

  const drawStatus = (): void => {
    const status = model.get("status");
    const running = model.get("running");
    const total = model.get("total_steps");
    const step = model.get("step");
    statusDot.dataset.status = status;
    statusDot.textContent = status;
    stepText.textContent = total ? `step ${step} / ${total}` : `step ${step}`;
    const losses = model.get("losses") ?? [];
    lossText.textContent = losses.length ? `loss ${formatNumber(losses[losses.length - 1])}` : "";
    spark.draw(losses);
    const locked = model.get("readonly");
    const external = model.get("external");
    stop.hidden = locked || !running;
    resume.hidden = locked || external || running || !(status === "paused" || status === "done");
    resume.textContent = status === "done" ? "Continue" : "Resume";
    restart.hidden = locked || external;
    message.textContent = model.get("message");
    message.hidden = !model.get("message");
  };

  bindings.listen(stop, "click", () => model.send({ type: "stop" }));
  bindings.listen(resume, "click", () => model.send({ type: "resume" }));
  bindings.listen(restart, "click", () => model.send({ type: "restart" }));
  bindings.on(["frame", "frame_meta"], drawFrame);
  bindings.on(["status", "running", "step", "total_steps", "losses", "readonly", "external", "message"], drawStatus);
  drawFrame();
  drawStatus();
  return root;
}
