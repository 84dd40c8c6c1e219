/**
 * The one TensorFlow.js entry point of the library. tfjs-core's Node bundle registers no gradients;
 * the umbrella package registers all of them (and the cpu backend) on the same tfjs-core instance.
 */
import '@tensorflow/tfjs';
export * from '@tensorflow/tfjs-core';
