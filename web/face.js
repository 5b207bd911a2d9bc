// The robot's head in 3D: the server's neutral mesh, moved each frame by the streamed
// per-vertex displacements (25 fps), or, for a head drawn by blendshapes, by the streamed
// weights of its morph targets (the rig's shapes, fetched once). three.js draws it;
// nothing here knows about time.
import * as THREE from "three";

// Whether WebGL runs on the CPU (SwiftShader, llvmpipe): then the face is drawn with
// cheaper settings, since every pixel shaded is CPU time taken from the model.
export function softwareWebGL() {
  const gl = document.createElement("canvas").getContext("webgl2");
  if (!gl) return true;
  const info = gl.getExtension("WEBGL_debug_renderer_info");
  const name = info ? gl.getParameter(info.UNMASKED_RENDERER_WEBGL) : gl.getParameter(gl.RENDERER);
  gl.getExtension("WEBGL_lose_context")?.loseContext();
  return /swiftshader|llvmpipe|software/i.test(String(name));
}

// Each shape's normals as a change from the neutral's, so lighting follows the morph
// (three.js blends morph normals the way it blends positions).
function morphNormals(geometry, deltas, count) {
  const base = geometry.getAttribute("normal").array;
  const posed = geometry.clone();
  const positions = posed.getAttribute("position").array;
  const neutral = geometry.getAttribute("position").array;
  const normals = [];
  for (let k = 0; k < count; k++) {
    const delta = deltas.subarray(k * neutral.length, (k + 1) * neutral.length);
    for (let i = 0; i < neutral.length; i++) positions[i] = neutral[i] + delta[i];
    posed.computeVertexNormals();
    const normal = posed.getAttribute("normal").array;
    normals.push(new THREE.BufferAttribute(normal.map((n, i) => n - base[i]), 3));
  }
  posed.dispose();
  return normals;
}

export class FaceView {
  // morphs: Float32Array (K * V * 3) of the rig's shapes at weight 1, with mesh.morph_names
  constructor(canvas, mesh, morphs = null) {
    this.mesh = mesh;
    this.software = softwareWebGL();
    this.neutral = Float32Array.from(mesh.neutral);
    this.mouth = Int32Array.from(mesh.mouth);
    this.renderer = new THREE.WebGLRenderer({ canvas, antialias: !this.software, preserveDrawingBuffer: true });
    this.renderer.setPixelRatio(1);
    this.scene = new THREE.Scene();
    this.scene.background = new THREE.Color(0x1b1f24);
    this.geometry = new THREE.BufferGeometry();
    this.positions = new THREE.BufferAttribute(this.neutral.slice(), 3);
    this.geometry.setAttribute("position", this.positions);
    this.geometry.setIndex(mesh.faces);
    const material = this.software
      ? new THREE.MeshLambertMaterial({ color: 0xe0b59a, side: THREE.DoubleSide })
      : new THREE.MeshStandardMaterial({ color: 0xe0b59a, roughness: 0.65, metalness: 0.0, side: THREE.DoubleSide });
    if (mesh.colors) {
      this.geometry.setAttribute("color", new THREE.BufferAttribute(Float32Array.from(mesh.colors), 3));
      material.vertexColors = true;
      material.color.set(0xffffff);
    }
    this.geometry.computeVertexNormals();
    this.geometry.computeBoundingSphere();
    this.morphs = morphs;
    if (morphs) this.addMorphs(mesh.morph_names.length);
    this.object = new THREE.Mesh(this.geometry, material);
    this.scene.add(this.object);
    this.scene.add(new THREE.HemisphereLight(0xffffff, 0x404050, 1.6));
    const key = new THREE.DirectionalLight(0xffffff, 1.8);
    key.position.set(0.3, 0.4, 1.0);
    this.scene.add(key);
    const sphere = this.geometry.boundingSphere;
    this.camera = new THREE.PerspectiveCamera(30, 1, 0.01, 10);
    this.camera.position.set(sphere.center.x, sphere.center.y, sphere.center.z + sphere.radius * 3.6);
    this.camera.lookAt(sphere.center);
    this.resize();
  }

  addMorphs(count) {
    const size = this.neutral.length;
    if (this.morphs.length !== count * size) throw new Error(`${this.morphs.length} morph values for ${count} shapes`);
    this.geometry.morphAttributes.position = Array.from({ length: count },
      (_, k) => new THREE.BufferAttribute(this.morphs.subarray(k * size, (k + 1) * size), 3));
    this.geometry.morphAttributes.normal = morphNormals(this.geometry, this.morphs, count);
    this.geometry.morphTargetsRelative = true;
    this.weights = new Float32Array(count);
  }

  resize() {
    const canvas = this.renderer.domElement;
    const width = canvas.clientWidth || 480, height = canvas.clientHeight || 480;
    this.renderer.setSize(width, height, false);
    this.camera.aspect = width / height;
    this.camera.updateProjectionMatrix();
  }

  // weights: Float32Array (K) of the morph targets, or null for the neutral face.
  showWeights(weights) {
    this.weights.fill(0);
    if (weights && weights.length === this.weights.length) this.weights.set(weights);
    const influences = this.object.morphTargetInfluences;
    for (let k = 0; k < this.weights.length; k++) influences[k] = this.weights[k];
    this.renderer.render(this.scene, this.camera);
  }

  // displacements: Float32Array (V * 3) or null for the neutral face.
  show(displacements) {
    const target = this.positions.array;
    if (displacements && displacements.length === target.length) {
      for (let i = 0; i < target.length; i++) target[i] = this.neutral[i] + displacements[i];
    } else {
      target.set(this.neutral);
    }
    this.positions.needsUpdate = true;
    this.geometry.computeVertexNormals();
    this.renderer.render(this.scene, this.camera);
  }

  // A frame: vertex displacements, or morph weights (then the displacement they make).
  showFrame(frame) {
    if (this.morphs) this.showWeights(frame ? frame.weights : null);
    else this.show(frame ? frame.displacements : null);
  }

  // Vertex v's displacement (x, y, z) in a frame, from its displacements or its weights.
  displacement(frame, v) {
    const out = [0, 0, 0];
    if (frame && frame.displacements) return [0, 1, 2].map((c) => frame.displacements[3 * v + c]);
    if (!frame || !frame.weights || !this.morphs) return out;
    const size = this.neutral.length;
    frame.weights.forEach((w, k) => {
      if (w) for (let c = 0; c < 3; c++) out[c] += w * this.morphs[k * size + 3 * v + c];
    });
    return out;
  }

  // How far the mouth moved in a frame (mean displacement of its vertices, metres).
  mouthMotion(frame) {
    if (!frame || !this.mouth.length) return 0;
    let sum = 0;
    for (const v of this.mouth) sum += Math.hypot(...this.displacement(frame, v));
    return sum / this.mouth.length;
  }

  // The mouth's box on the canvas, in CSS pixels: {x, y, width, height}, for the frame
  // shown (the morph targets move the mesh on the GPU, so their share is added here).
  mouthBox(frame = null) {
    const canvas = this.renderer.domElement;
    const point = new THREE.Vector3();
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const v of this.mouth) {
      point.fromArray(this.positions.array, 3 * v);
      if (this.morphs) point.add(new THREE.Vector3(...this.displacement(frame, v)));
      point.project(this.camera);
      const x = (point.x + 1) / 2 * canvas.clientWidth, y = (1 - point.y) / 2 * canvas.clientHeight;
      x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y);
    }
    const rect = canvas.getBoundingClientRect();
    return { x: rect.left + x0, y: rect.top + y0, width: x1 - x0, height: y1 - y0 };
  }
}
