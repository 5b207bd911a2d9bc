// The robot's head in 3D: the server's neutral mesh, moved each frame by the streamed
// per-vertex displacements (25 fps). three.js draws it; nothing here knows about time.
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

export class FaceView {
  constructor(canvas, mesh) {
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

  resize() {
    const canvas = this.renderer.domElement;
    const width = canvas.clientWidth || 480, height = canvas.clientHeight || 480;
    this.renderer.setSize(width, height, false);
    this.camera.aspect = width / height;
    this.camera.updateProjectionMatrix();
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

  // How far the mouth moved in a frame (mean displacement of its vertices, metres).
  mouthMotion(displacements) {
    if (!displacements || !this.mouth.length) return 0;
    let sum = 0;
    for (const v of this.mouth) {
      const i = 3 * v;
      sum += Math.hypot(displacements[i], displacements[i + 1], displacements[i + 2]);
    }
    return sum / this.mouth.length;
  }

  // The mouth's box on the canvas, in CSS pixels: {x, y, width, height}.
  mouthBox() {
    const canvas = this.renderer.domElement;
    const point = new THREE.Vector3();
    let x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
    for (const v of this.mouth) {
      point.fromArray(this.positions.array, 3 * v).project(this.camera);
      const x = (point.x + 1) / 2 * canvas.clientWidth, y = (1 - point.y) / 2 * canvas.clientHeight;
      x0 = Math.min(x0, x); y0 = Math.min(y0, y); x1 = Math.max(x1, x); y1 = Math.max(y1, y);
    }
    const rect = canvas.getBoundingClientRect();
    return { x: rect.left + x0, y: rect.top + y0, width: x1 - x0, height: y1 - y0 };
  }
}
